"""execute_sql on both backends: one placeholder style, dict rows, clear errors for wrong
parameters, the ``db`` proxy, and what happens when no database is open."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from harness.exceptions import HarnessError, NoActiveDatabase
from harness.sql.database import Database, current_database, db, execute_sql
from harness.sql.models import Campaign


async def test_question_mark_placeholders_work_on_every_backend(database: Database) -> None:
    rows = await execute_sql("SELECT ? AS n, ? AS s", [7, "seven"])
    assert rows == [{"n": 7, "s": "seven"}]


async def test_question_mark_and_percent_inside_a_literal_are_plain_text(
    database: Database,
) -> None:
    assert await execute_sql("SELECT '?%' AS s, ? AS n", [1]) == [{"s": "?%", "n": 1}]
    assert await execute_sql("SELECT '?%' AS s") == [{"s": "?%"}]
    rows = await execute_sql("SELECT 'why?' AS q, 'a%b' AS p, ? AS x", ("y",))
    assert rows == [{"q": "why?", "p": "a%b", "x": "y"}]


async def test_like_pattern_with_percent_and_a_placeholder(database: Database) -> None:
    await Campaign.create(name="spring sale")
    await Campaign.create(name="autumn sale")
    rows = await execute_sql(
        "SELECT name FROM campaigns WHERE name LIKE 'spring%' AND name <> ? ORDER BY id", ["x"]
    )
    assert rows == [{"name": "spring sale"}]


async def test_rows_are_a_list_of_dicts_keyed_by_column(database: Database) -> None:
    await Campaign.create(name="a")
    await Campaign.create(name="b")
    rows = await execute_sql("SELECT id, name FROM campaigns ORDER BY id")
    assert isinstance(rows, list)
    assert all(type(row) is dict for row in rows)
    assert [row["name"] for row in rows] == ["a", "b"]
    assert list(rows[0]) == ["id", "name"]


async def test_insert_returning_gives_the_new_rows(database: Database) -> None:
    rows = await execute_sql(
        "INSERT INTO campaigns (name) VALUES (?), (?) RETURNING id, name", ["a", "b"]
    )
    assert [row["name"] for row in rows] == ["a", "b"]
    assert all(isinstance(row["id"], int) for row in rows)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO campaigns (name) VALUES ('a')",
        "UPDATE campaigns SET name = 'b'",
        "DELETE FROM campaigns WHERE id = -1",
        "CREATE TABLE scratch (x INTEGER)",
    ],
)
async def test_statements_without_rows_return_an_empty_list(database: Database, sql: str) -> None:
    assert await execute_sql(sql) == []


async def test_select_with_no_matching_rows_returns_an_empty_list(database: Database) -> None:
    assert await execute_sql("SELECT * FROM campaigns WHERE id = ?", [-1]) == []


@pytest.mark.parametrize(
    ("params", "type_name"), [({"id": 1}, "dict"), ("1", "str"), ({1}, "set"), (1, "int")]
)
async def test_params_that_are_not_a_list_or_tuple_raise_type_error(
    database: Database, params: Any, type_name: str
) -> None:
    with pytest.raises(TypeError, match=f"must be a list or tuple, not {type_name}") as caught:
        await execute_sql("SELECT * FROM campaigns WHERE id = ?", params)
    assert "placeholders are ?" in str(caught.value)
    assert database.round_trips.count == 0, "rejected before anything was sent"


async def test_db_dialect_names_the_backend(database: Database, backend: str) -> None:
    assert db.dialect == backend
    assert db.dialect in {"sqlite", "postgresql"}
    assert db.dialect == database.dialect == database.config.dialect
    assert current_database() is database
    assert "no database open" not in repr(db)


async def test_no_active_database_outside_open_database(database: Database) -> None:
    async def query() -> list[dict[str, Any]]:
        return await execute_sql("SELECT 1 AS one")

    async def dialect() -> str:
        return str(db.dialect)

    with pytest.raises(NoActiveDatabase, match="open_database") as caught:
        await asyncio.create_task(query(), context=contextvars.Context())
    assert isinstance(caught.value, HarnessError)
    with pytest.raises(NoActiveDatabase):
        await asyncio.create_task(dialect(), context=contextvars.Context())
    with pytest.raises(NoActiveDatabase):
        contextvars.Context().run(current_database)
    assert contextvars.Context().run(repr, db) == "<db: no database open>"

    # The active database of this task is untouched.
    assert await execute_sql("SELECT 1 AS one") == [{"one": 1}]
