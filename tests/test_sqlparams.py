"""Tests for harness.sql.sqlparams: placeholder translation, counting and write detection."""

from __future__ import annotations

import re
from typing import NamedTuple

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from harness.sql.sqlparams import count_placeholders, is_write, to_numbered, to_pyformat, tokenize

# --- to_pyformat / count_placeholders: examples -------------------------------------------


def test_bare_question_marks_become_percent_s() -> None:
    sql = "SELECT * FROM jobs WHERE id = ? AND state = ?"
    assert to_pyformat(sql) == "SELECT * FROM jobs WHERE id = %s AND state = %s"
    assert count_placeholders(sql) == 2


def test_question_mark_inside_string_literal_is_left_alone() -> None:
    assert to_pyformat("SELECT 'why?' WHERE a = ?") == "SELECT 'why?' WHERE a = %s"
    assert count_placeholders("SELECT 'why?'") == 0


def test_doubled_quote_does_not_end_string_literal() -> None:
    sql = "SELECT 'it''s ?' , ?"
    assert to_pyformat(sql) == "SELECT 'it''s ?' , %s"
    assert count_placeholders(sql) == 1


def test_backslash_escaped_quote_in_e_string_does_not_end_it() -> None:
    sql = "SELECT E'a\\'?' , ?"
    assert to_pyformat(sql) == "SELECT E'a\\'?' , %s"
    assert count_placeholders(sql) == 1


def test_lowercase_e_prefix_also_starts_escape_string() -> None:
    assert count_placeholders("SELECT e'\\'?' , ?") == 1


def test_backslash_in_plain_string_is_not_an_escape() -> None:
    # standard_conforming_strings: 'a\' is a complete literal, so the ? after it is live.
    assert to_pyformat("SELECT 'a\\', ?") == "SELECT 'a\\', %s"


def test_word_ending_in_e_before_quote_is_not_an_escape_string_prefix() -> None:
    # "type'..." is the word "type" followed by a plain literal, where \ is not special.
    assert count_placeholders("SELECT type'\\' , ?") == 1


def test_question_mark_inside_quoted_identifier_is_left_alone() -> None:
    sql = 'SELECT "col?", "a""?" FROM t WHERE x = ?'
    assert to_pyformat(sql) == 'SELECT "col?", "a""?" FROM t WHERE x = %s'
    assert count_placeholders(sql) == 1


def test_question_mark_inside_line_comment_is_left_alone() -> None:
    sql = "SELECT 1 -- why?\nWHERE a = ?"
    assert to_pyformat(sql) == "SELECT 1 -- why?\nWHERE a = %s"
    assert count_placeholders(sql) == 1


def test_line_comment_without_newline_runs_to_end_of_text() -> None:
    assert count_placeholders("SELECT ? -- ? ?") == 1


def test_question_mark_inside_block_comment_is_left_alone() -> None:
    assert to_pyformat("SELECT /* ? */ ?") == "SELECT /* ? */ %s"


def test_block_comments_nest() -> None:
    sql = "SELECT /* a /* b */ ? */ ?"
    assert to_pyformat(sql) == "SELECT /* a /* b */ ? */ %s"
    assert count_placeholders(sql) == 1


def test_question_mark_inside_untagged_dollar_quote_is_left_alone() -> None:
    sql = "SELECT $$ ? 'x $$, ?"
    assert to_pyformat(sql) == "SELECT $$ ? 'x $$, %s"
    assert count_placeholders(sql) == 1


def test_question_mark_inside_tagged_dollar_quote_is_left_alone() -> None:
    sql = "SELECT $fn$ ? $$ ? $fn$, ?"
    assert to_pyformat(sql) == "SELECT $fn$ ? $$ ? $fn$, %s"
    assert count_placeholders(sql) == 1


def test_positional_parameter_is_not_a_dollar_quote() -> None:
    sql = "SELECT $1, ?, $2"
    assert to_pyformat(sql) == "SELECT $1, %s, $2"
    assert count_placeholders(sql) == 1


def test_dollar_inside_identifier_is_not_a_dollar_quote() -> None:
    assert count_placeholders("SELECT a$b$ , ?") == 1


def test_percent_is_doubled_everywhere() -> None:
    sql = "SELECT 5 % 2, '50%', \"p%\", $$%$$ -- 1%\nWHERE a LIKE ? /* % */"
    expected = "SELECT 5 %% 2, '50%%', \"p%%\", $$%%$$ -- 1%%\nWHERE a LIKE %s /* %% */"
    assert to_pyformat(sql) == expected


def test_percent_directly_before_placeholder_is_doubled() -> None:
    assert to_pyformat("SELECT %?") == "SELECT %%%s"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'never closed ?",
        "SELECT E'never closed \\' ?",
        'SELECT "never closed ?',
        "SELECT /* never closed /* ? */ ?",
        "SELECT $$ never closed ?",
        "SELECT $t$ never closed $$ ?",
    ],
)
def test_unterminated_literal_or_comment_runs_to_end_without_raising(sql: str) -> None:
    assert count_placeholders(sql) == 0
    assert to_pyformat(sql) == sql


def test_empty_text_has_no_placeholders() -> None:
    assert to_pyformat("") == ""
    assert count_placeholders("") == 0


# --- to_pyformat / count_placeholders: properties -----------------------------------------


class Fragment(NamedTuple):
    """A piece of SQL, what to_pyformat should turn it into, and its placeholder count."""

    sql: str
    expected: str
    placeholders: int


def _inert(sql: str) -> Fragment:
    """A fragment with no live placeholders: only its % signs change."""
    return Fragment(sql, sql.replace("%", "%%"), 0)


def _no_nested_comment_markers(text: str) -> bool:
    return "/*" not in text and "*/" not in text


def _dollar_body_ok(body: str, tag: str) -> bool:
    """True when the closing delimiter is first found right after ``body``."""
    close = f"${tag}$"
    return (body + close).find(close) == len(body)


placeholders = st.just(Fragment("?", "%s", 1))
words = st.sampled_from(
    ["SELECT", "x", "e", "E", "1", "=", ",", "(", ")", "%", "a%b", "$1", "a$b$", "*"]
).map(_inert)
string_literals = st.text().map(lambda t: "'" + t.replace("'", "''") + "'").map(_inert)
escape_strings = (
    st.text().map(lambda t: "E'" + t.replace("\\", "\\\\").replace("'", "\\'") + "'").map(_inert)
)
identifiers = st.text().map(lambda t: '"' + t.replace('"', '""') + '"').map(_inert)
line_comments = st.text().map(lambda t: "--" + t.replace("\n", " ") + "\n").map(_inert)
comment_text = st.text().filter(_no_nested_comment_markers)
block_comments = st.builds(
    lambda a, b, nested: f"/* {a} /* {b} */ */" if nested else f"/* {a} */",
    comment_text,
    comment_text,
    st.booleans(),
).map(_inert)
dollar_quotes = (
    st.tuples(st.text(), st.sampled_from(["", "tag", "q_1", "_"]))
    .filter(lambda bt: _dollar_body_ok(*bt))
    .map(lambda bt: f"${bt[1]}${bt[0]}${bt[1]}$")
    .map(_inert)
)
fragments = st.lists(
    st.one_of(
        placeholders,
        words,
        string_literals,
        escape_strings,
        identifiers,
        line_comments,
        block_comments,
        dollar_quotes,
    )
)


def _join(parts: list[Fragment]) -> Fragment:
    """Join fragments with spaces, so no two of them can fuse into a new token."""
    return Fragment(
        " ".join(p.sql for p in parts),
        " ".join(p.expected for p in parts),
        sum(p.placeholders for p in parts),
    )


@given(fragments)
def test_count_matches_placeholders_inserted(parts: list[Fragment]) -> None:
    built = _join(parts)
    assert count_placeholders(built.sql) == built.placeholders


@given(fragments)
def test_translation_matches_expected(parts: list[Fragment]) -> None:
    built = _join(parts)
    assert to_pyformat(built.sql) == built.expected


@given(fragments)
def test_translation_round_trips_when_original_has_no_percent_s(parts: list[Fragment]) -> None:
    sql = _join(parts).sql
    assume("%s" not in sql)
    assert to_pyformat(sql).replace("%%", "%").replace("%s", "?") == sql


def test_placeholders_are_numbered_and_percent_is_left_alone() -> None:
    sql = "SELECT '?%' , ? WHERE a LIKE 'x%' AND b = ? -- ?"
    assert to_numbered(sql) == ("SELECT '?%' , $1 WHERE a LIKE 'x%' AND b = $2 -- ?", 2)


@given(fragments)
def test_numbering_sends_what_psycopg_made_of_the_pyformat_text(parts: list[Fragment]) -> None:
    # The PostgreSQL backend sends ``to_numbered`` through a raw cursor: the server must get the
    # very text psycopg sent when the backend gave it ``to_pyformat``'s (``%%`` is a ``%``, and
    # each ``%s`` the next ``$n``).
    built = _join(parts)
    numbers = iter(range(1, built.placeholders + 1))
    psycopg_made = re.sub(
        "%%|%s",
        lambda found: "%" if found.group() == "%%" else f"${next(numbers)}",
        to_pyformat(built.sql),
    )
    assert to_numbered(built.sql) == (psycopg_made, built.placeholders)
    long = " ".join([built.sql] * (5000 // max(len(built.sql), 1) + 1))
    assert to_numbered(long)[1] == built.placeholders * (5000 // max(len(built.sql), 1) + 1)


@given(st.text())
def test_any_text_tokenizes_losslessly_without_raising(sql: str) -> None:
    assert "".join(token.text for token in tokenize(sql)) == sql
    assert count_placeholders(sql) <= sql.count("?")


# --- is_write -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO jobs (id) VALUES (?)",
        "  insert into jobs default values",
        "UPDATE jobs SET state = 'done'",
        "delete from jobs where id = ?",
        "REPLACE INTO jobs (id) VALUES (?)",
        "-- claim one\n/* nested /* note */ */ Update jobs SET n = n + 1",
        "WITH c AS (SELECT id FROM jobs FOR UPDATE SKIP LOCKED) UPDATE jobs SET n = 1",
        "WITH moved AS (DELETE FROM jobs RETURNING *) SELECT count(*) FROM moved",
        "with x as (select 1) insert into t select * from x",
    ],
)
def test_write_statements_are_writes(sql: str) -> None:
    assert is_write(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM jobs",
        "select 'update'",
        "-- update\nselect 1",
        "/* delete */ SELECT 1",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "WITH x AS (SELECT 'insert' AS s) SELECT * FROM x -- update",
        "WITH x AS (SELECT replace(name, 'a', 'b') FROM t) SELECT * FROM x",
        "WITH x AS (SELECT id FROM jobs FOR UPDATE) SELECT * FROM x",
        "WITH x AS (SELECT id FROM jobs FOR NO KEY UPDATE) SELECT * FROM x",
        'SELECT "update" FROM t',
        "",
        "   ",
    ],
)
def test_reads_and_empty_statements_are_not_writes(sql: str) -> None:
    assert not is_write(sql)


@given(st.lists(st.one_of(line_comments, block_comments)), st.booleans())
def test_leading_comments_do_not_change_is_write(comments: list[Fragment], write: bool) -> None:
    statement = "UPDATE jobs SET n = ?" if write else "SELECT n FROM jobs WHERE id = ?"
    assert is_write(" ".join(c.sql for c in comments) + " " + statement) is write
