"""The kata's schema as the grader sees it, to tell whether a solution dropped, created or
altered a table, column, index or trigger (the test that let it fails, naming what changed)."""

from __future__ import annotations

from typing import Any

__all__ = ["schema_changes", "schema_of"]

_SQLITE_SCHEMA = "SELECT type AS kind, name, coalesce(sql, '') AS definition FROM sqlite_master"
#: Read twice a test. The schema's relations are scanned once (``rel``): each scan of
#: ``pg_class`` by schema walks the whole catalog, dead rows included, and on a database where
#: many schemas were made and dropped that cost more than the rest. A column's type is worded as
#: ``information_schema.columns`` words it (``data_type``, ``is_nullable``), of the columns that
#: view shows, without its cost: ``character varying``, not its length; ``ARRAY``,
#: ``USER-DEFINED``; a domain's base type.
_POSTGRES_SCHEMA = """
WITH rel AS MATERIALIZED (
    SELECT oid, relname, relkind, relowner FROM pg_catalog.pg_class
     WHERE relnamespace = pg_catalog.current_schema()::regnamespace
)
SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence'
            ELSE c.relkind::text END AS kind, c.relname AS name, '' AS definition
  FROM rel c
UNION ALL
SELECT 'column', c.relname || '.' || a.attname,
       CASE WHEN t.typtype = 'd' THEN
                CASE WHEN bt.typelem <> 0 AND bt.typlen = -1 THEN 'ARRAY'
                     WHEN bt.typnamespace = 'pg_catalog'::regnamespace
                         THEN pg_catalog.format_type(t.typbasetype, NULL)
                     ELSE 'USER-DEFINED' END
            WHEN t.typelem <> 0 AND t.typlen = -1 THEN 'ARRAY'
            WHEN t.typnamespace = 'pg_catalog'::regnamespace
                THEN pg_catalog.format_type(a.atttypid, NULL)
            ELSE 'USER-DEFINED' END
       || ' ' || CASE WHEN a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) THEN 'NO'
                      ELSE 'YES' END
  FROM rel c
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
 WHERE c.relkind IN ('r', 'v', 'f', 'p')
   AND (pg_catalog.pg_has_role(c.relowner, 'USAGE')
        OR pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT, INSERT, UPDATE, REFERENCES'))
UNION ALL
SELECT 'trigger', t.tgname, '' FROM pg_catalog.pg_trigger t JOIN rel c ON c.oid = t.tgrelid
 WHERE NOT t.tgisinternal
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
