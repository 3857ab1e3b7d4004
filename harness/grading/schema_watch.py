"""The kata's schema as the grader sees it, to tell whether a solution dropped, created or
altered a table, column, index or trigger (the test that let it fails, naming what changed)."""

from __future__ import annotations

from typing import Any

__all__ = ["schema_changes", "schema_of"]

_SQLITE_SCHEMA = "SELECT type AS kind, name, coalesce(sql, '') AS definition FROM sqlite_master"
_POSTGRES_SCHEMA = """
SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence'
            ELSE c.relkind::text END AS kind, c.relname AS name, '' AS definition
  FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace
UNION ALL
SELECT 'column', table_name || '.' || column_name, data_type || ' ' || is_nullable
  FROM information_schema.columns WHERE table_schema = current_schema()
UNION ALL
SELECT 'trigger', t.tgname, '' FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
"""


async def schema_of(database: Any) -> dict[str, str]:
    """The kata's tables, columns, indexes and triggers in ``database`` ("table jobs" -> its
    definition), read with the harness's own connection, outside any count or hook."""
    sql = _SQLITE_SCHEMA if database.dialect == "sqlite" else _POSTGRES_SCHEMA
    async with database.connection() as conn:
        result = await database.backend.execute(conn, sql, [])
    return {f"{row['kind']} {row['name']}": str(row["definition"]) for row in result.rows}


def schema_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What happened to the schema, tables first ("tables job_transitions and jobs were
    dropped"); the indexes, columns and triggers that went with a table are not listed again."""
    changes = []
    for what, keys in (
        ("dropped", [k for k in before if k not in after]),
        ("created", [k for k in after if k not in before]),
        ("altered", [k for k in before if k in after and before[k] != after[k]]),
    ):
        tables = sorted(k.split(" ", 1)[1] for k in keys if k.startswith("table "))
        if tables:
            names = " and ".join(
                [", ".join(tables[:-1]), tables[-1]] if len(tables) > 1 else tables
            )
            plural = "tables" if len(tables) > 1 else "table"
            changes.append(f"{plural} {names} {'were' if len(tables) > 1 else 'was'} {what}")
    if changes:
        return changes
    changes += [f"{key} was dropped" for key in before if key not in after]
    changes += [f"{key} was created" for key in after if key not in before]
    changes += [f"{k} was altered" for k in before if k in after and before[k] != after[k]]
    return changes
