"""Translate SQLite-style ``?`` placeholders for PostgreSQL, and classify statements.

The harness lets candidates write one dialect of SQL with ``?`` placeholders and runs it on
both SQLite and PostgreSQL. psycopg 3 wants ``%s`` and parses ``%`` in the *whole* query
text whenever parameters are passed, so a naive ``sql.replace("?", "%s")`` breaks on
``WHERE note = 'why?'`` and on ``LIKE 'a%'``. Getting this right needs a lexer that knows
where string literals, quoted identifiers, comments and dollar quotes begin and end.

Everything here is built on one hand-written scanner, :func:`tokenize`, which makes a
single pass over the text. The three public helpers only look at its tokens:

* :func:`to_pyformat` rewrites placeholders and doubles every literal ``%``;
* :func:`to_numbered` rewrites them as PostgreSQL's own ``$1``, ``$2``... for a raw cursor,
  which sends the text as it is (psycopg parses nothing: a 10,000-row ``INSERT`` is not
  scanned a second time);
* :func:`count_placeholders` lets callers check the parameter count with a clear error;
* :func:`is_write` tells the fault injector whether a statement writes, so it can crash a
  worker "before the Nth database write".

Unterminated literals and comments run to the end of the text instead of raising: the
database reports the syntax error far better than we could.
PostgreSQL's jsonb ``?`` operators are not supported; write ``jsonb_exists()`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "Kind",
    "Token",
    "count_placeholders",
    "is_write",
    "live_words",
    "outer_where",
    "to_numbered",
    "to_pyformat",
    "tokenize",
]


class Kind(Enum):
    """What a run of SQL text is; only CODE, WORD and PLACEHOLDER are live SQL."""

    PLACEHOLDER = "placeholder"  # a ``?`` outside every literal and comment
    WORD = "word"  # a keyword or bare identifier
    CODE = "code"  # any other single character outside literals and comments
    STRING = "string"  # '...', E'...' or $tag$...$tag$
    IDENTIFIER = "identifier"  # "..."
    COMMENT = "comment"  # -- to end of line, or (nested) /* ... */


class Token(NamedTuple):
    """One lexed run; concatenating the ``text`` of all tokens gives back the input."""

    kind: Kind
    text: str


_WORD_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
# PostgreSQL allows ``$`` inside identifiers, so ``a$b$`` is one word, not a dollar quote.
_WORD_CHARS = _WORD_START | frozenset("0123456789$")
_TAG_CHARS = _WORD_START | frozenset("0123456789")
_WRITE_KEYWORDS = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE"})


def tokenize(sql: str) -> Iterator[Token]:
    """Split ``sql`` into tokens in one left-to-right pass.

    Each branch finds where the current token ends; literals and comments that never
    close simply end with the text, so every input tokenizes.
    """
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "?":
            yield Token(Kind.PLACEHOLDER, c)
            i += 1
            continue
        if c in "eE" and sql.startswith("'", i + 1):
            kind, end = Kind.STRING, _end_of_quoted(sql, i + 2, "'", backslash=True)
        elif c in _WORD_START:
            kind, end = Kind.WORD, _end_of_word(sql, i)
        elif c == "'":
            kind, end = Kind.STRING, _end_of_quoted(sql, i + 1, "'", backslash=False)
        elif c == '"':
            kind, end = Kind.IDENTIFIER, _end_of_quoted(sql, i + 1, '"', backslash=False)
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            kind, end = Kind.COMMENT, n if newline < 0 else newline
        elif sql.startswith("/*", i):
            kind, end = Kind.COMMENT, _end_of_block_comment(sql, i)
        elif c == "$" and (tag := _dollar_tag(sql, i)) is not None:
            close = sql.find(tag, i + len(tag))
            kind, end = Kind.STRING, n if close < 0 else close + len(tag)
        else:
            kind, end = Kind.CODE, i + 1
        yield Token(kind, sql[i:end])
        i = end


def _end_of_word(sql: str, i: int) -> int:
    """Return the index just past the identifier or keyword starting at ``i``."""
    while i < len(sql) and sql[i] in _WORD_CHARS:
        i += 1
    return i


def _end_of_quoted(sql: str, i: int, quote: str, *, backslash: bool) -> int:
    """Return the index just past the closing ``quote``, scanning from ``i`` (inside it).

    A doubled quote is an escaped quote in all three quoted forms; E-strings also let a
    backslash escape the next character, so ``E'a\\'?'`` is one string.
    """
    n = len(sql)
    while i < n:
        c = sql[i]
        if backslash and c == "\\":
            i += 2
        elif c == quote:
            if not sql.startswith(quote, i + 1):
                return i + 1
            i += 2
        else:
            i += 1
    return n


def _end_of_block_comment(sql: str, i: int) -> int:
    """Return the index just past the ``*/`` matching the ``/*`` at ``i``.

    PostgreSQL nests block comments, so ``/* a /* b */ ? */`` is a single comment.
    """
    depth, i, n = 1, i + 2, len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _dollar_tag(sql: str, i: int) -> str | None:
    """Return the opening delimiter (``$$`` or ``$tag$``) at ``i``, or None if there is none.

    A tag is empty or starts with a letter or underscore, which keeps ``$1`` (a positional
    parameter) from being read as the start of a dollar quote.
    """
    j = i + 1
    if j < len(sql) and sql[j] in _WORD_START:
        while j < len(sql) and sql[j] in _TAG_CHARS:
            j += 1
    if sql.startswith("$", j):
        return sql[i : j + 1]
    return None


# Workers repeat the same few statements: scanning each once keeps the hot path cheap.
@lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """Rewrite ``?`` placeholders as ``%s`` and escape every other ``%`` as ``%%``.

    The escaping applies inside literals and comments too, because psycopg scans the
    entire text for ``%`` once any parameters are passed.
    """
    return "".join(
        "%s" if token.kind is Kind.PLACEHOLDER else token.text.replace("%", "%%")
        for token in tokenize(sql)
    )


#: Statements longer than this (a batch's ``INSERT`` of thousands of rows) have a small cache of
#: their own: a bulk load sends one text many times (each full batch) and one last one, while a
#: thousand texts of that size would hold hundreds of megabytes.
_LONG = 4096


def to_numbered(sql: str) -> tuple[str, int]:
    """Rewrite ``?`` placeholders as ``$1``, ``$2``...; return the statement and how many.

    Nothing else changes: a ``%`` is PostgreSQL's, as the server reads it.
    """
    if len(sql) > _LONG:
        return _to_numbered_long(sql)
    return _to_numbered_short(sql)


def _to_numbered(sql: str) -> tuple[str, int]:
    parts: list[str] = []
    count = 0
    for token in tokenize(sql):
        if token.kind is Kind.PLACEHOLDER:
            count += 1
            parts.append(f"${count}")
        else:
            parts.append(token.text)
    return "".join(parts), count


_to_numbered_short = lru_cache(maxsize=1024)(_to_numbered)
_to_numbered_long = lru_cache(maxsize=8)(_to_numbered)


@lru_cache(maxsize=1024)
def count_placeholders(sql: str) -> int:
    """Return how many ``?`` in ``sql`` are real placeholders, to check against the params."""
    return sum(1 for token in tokenize(sql) if token.kind is Kind.PLACEHOLDER)


@lru_cache(maxsize=1024)
def is_write(sql: str) -> bool:
    """Return True if the statement writes: INSERT, UPDATE, DELETE, REPLACE, or such a WITH.

    A WITH statement counts as a write when a write keyword appears anywhere in its live
    SQL, which covers data-modifying CTEs and ``WITH x AS (...) UPDATE ...``. Inside a
    WITH, a keyword directly followed by ``(`` is a function call (``replace(a, b, c)``)
    and ``FOR [NO KEY] UPDATE`` is a row lock, so neither counts.
    """
    live = [t for t in tokenize(sql) if t.kind not in (Kind.COMMENT, Kind.STRING)]
    live = [t for t in live if not (t.kind is Kind.CODE and t.text.isspace())]
    words = [t.text.upper() for t in live if t.kind is Kind.WORD]
    if not words or words[0] != "WITH":
        return bool(words) and words[0] in _WRITE_KEYWORDS
    for index, token in enumerate(live):
        word = token.text.upper()
        if token.kind is not Kind.WORD or word not in _WRITE_KEYWORDS:
            continue
        following = live[index + 1].text if index + 1 < len(live) else ""
        previous = live[index - 1].text.upper() if index > 0 else ""
        if following != "(" and previous not in ("FOR", "KEY"):
            return True
    return False


def live_words(sql: str) -> list[str]:
    """Keywords, names and brackets, upper-cased and unquoted (strings, comments and
    placeholders left out): what the grader reads of a statement to word a diagnosis."""
    return [
        t.text.strip('"').upper()
        for t in tokenize(sql)
        if t.kind in (Kind.WORD, Kind.IDENTIFIER) or t.text in ("(", ")")
    ]


def outer_where(words: list[str]) -> list[str]:
    """The words of a statement's own WHERE (``live_words``), without those of a subquery's: a
    sub-select's WHERE is not evaluated again when the row turns out to have changed."""
    subquery: list[bool] = []  # one entry per open bracket: does it hold a SELECT?
    in_where = False
    found = []
    for index, word in enumerate(words):
        if word == "(":
            subquery.append(index + 1 < len(words) and words[index + 1] == "SELECT")
        elif word == ")":
            if subquery:
                subquery.pop()
        elif any(subquery):
            continue
        elif word == "WHERE":
            in_where = True
        elif word == "RETURNING":
            in_where = False
        elif in_where:
            found.append(word)
    return found
