"""A tiny async ORM: declared typed fields, lazy querysets, one row at a time.

    job = await Job.create(campaign_id=1, email="a@example.com")
    pending = await Job.filter(status=JobStatus.PENDING).order_by("id").limit(10).all()
    changed = await Job.filter(id=job.id, status=JobStatus.PENDING).update(status=JobStatus.RUNNING)

It is tiny on purpose: equality filters only, no bulk create, no relations, no select-for-update.
The kata is about what an engineer does when the ORM is not enough: that is what ``execute_sql``
is for.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar, overload

from ..exceptions import DoesNotExist, MultipleObjectsReturned, NaiveDatetimeError
from ..ownership import code_site
from .database import current_database

__all__ = ["Field", "Model", "QuerySet", "utcnow"]

T = TypeVar("T")
M = TypeVar("M", bound="Model")
_MISSING: Any = object()


def utcnow() -> datetime:
    """Now, as a timezone-aware UTC datetime (what every timestamp field holds)."""
    return datetime.now(UTC)


def _to_datetime(value: Any, target: str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    if value.utcoffset() is None:
        # Rows always come back aware: a naive value is the caller's, and would be stored in a
        # zone the driver guesses (see harness.sql.database).
        raise NaiveDatetimeError(value, target, code_site())
    return value.astimezone(UTC)


class Field(Generic[T]):
    """A declared, typed column. ``Field[int](int)``, ``Field[str | None](str, null=True)``.

    ``kind`` is the Python type values are converted to when read from a row: ``int``, ``str``,
    ``datetime`` or a ``str`` enum class.
    """

    def __init__(
        self,
        kind: type[Any],
        *,
        null: bool = False,
        default: Any = _MISSING,
        default_factory: Callable[[], Any] | None = None,
        primary_key: bool = False,
        auto_now: bool = False,
    ) -> None:
        self.kind = kind
        self.null = null or primary_key
        self.default = default
        self.default_factory = default_factory
        self.primary_key = primary_key
        self.auto_now = auto_now
        self.name = ""
        self.owner_name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.owner_name = owner.__name__

    @overload
    def __get__(self, obj: None, owner: type) -> Field[T]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> T: ...
    def __get__(self, obj: object | None, owner: type) -> Field[T] | T:
        if obj is None:
            return self
        return obj.__dict__[self.name]  # type: ignore[no-any-return]

    def __set__(self, obj: object, value: T) -> None:
        obj.__dict__[self.name] = self.to_python(value)

    def initial(self) -> Any:
        if self.default_factory is not None:
            return self.default_factory()
        return None if self.default is _MISSING else self.default

    def to_python(self, value: Any) -> Any:
        """Convert a value from a row or from the caller to this field's type."""
        if value is None:
            return None
        if self.kind is datetime:
            return _to_datetime(value, f"{self.owner_name}.{self.name}")
        if isinstance(self.kind, type) and issubclass(self.kind, enum.Enum):
            return self.kind(value)
        if self.kind is int:
            return int(value)
        return value

    def __repr__(self) -> str:
        return f"<Field {self.name}: {getattr(self.kind, '__name__', self.kind)}>"


class Model:
    """Base class of the ORM's models. Subclasses declare ``Field`` attributes and a table."""

    __table__: ClassVar[str]
    _fields: ClassVar[dict[str, Field[Any]]]
    _pk: ClassVar[str]
    DoesNotExist: ClassVar[type[DoesNotExist]]

    def __init_subclass__(cls, table: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, Field[Any]] = {}
        for klass in reversed(cls.__mro__):
            fields.update({k: v for k, v in vars(klass).items() if isinstance(v, Field)})
        cls._fields = fields
        cls._pk = next((name for name, f in fields.items() if f.primary_key), "id")
        if table is not None:
            cls.__table__ = table
        # Each model has its own DoesNotExist, so callers can catch Job.DoesNotExist or any.
        cls.DoesNotExist = type(
            "DoesNotExist",
            (DoesNotExist,),
            {"__module__": cls.__module__, "__qualname__": f"{cls.__qualname__}.DoesNotExist"},
        )

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        for name, f in self._fields.items():
            setattr(self, name, values[name] if name in values else f.initial())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.as_dict() == other.as_dict()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._fields}

    @classmethod
    def from_row(cls: type[M], row: Mapping[str, Any]) -> M:
        """Build an instance from a row as ``execute_sql`` returns it (extra columns ignored)."""
        obj = cls.__new__(cls)
        for name, f in cls._fields.items():
            setattr(obj, name, row.get(name, f.initial()))
        return obj

    # --- queries -------------------------------------------------------------------------

    @classmethod
    def filter(cls: type[M], **eq: Any) -> QuerySet[M]:
        """Rows whose fields equal the given values (``None`` matches NULL)."""
        return QuerySet(cls).filter(**eq)

    @classmethod
    def all(cls: type[M]) -> QuerySet[M]:
        return QuerySet(cls)

    @classmethod
    async def get(cls: type[M], **eq: Any) -> M:
        """The one matching row; ``DoesNotExist`` when there is none."""
        rows = await QuerySet(cls).filter(**eq).limit(2).all()
        if not rows:
            raise cls.DoesNotExist(f"no {cls.__name__} with {_describe(eq)}")
        if len(rows) > 1:
            raise MultipleObjectsReturned(f"more than one {cls.__name__} with {_describe(eq)}")
        return rows[0]

    @classmethod
    async def create(cls: type[M], **values: Any) -> M:
        """Insert one row and return it as stored (with its id and defaults)."""
        obj = cls(**values)
        await obj.save()
        return obj

    async def save(self) -> None:
        """Insert this instance (no id yet) or write all its fields to its row."""
        database = current_database()
        now = utcnow()
        for f in self._fields.values():
            if f.auto_now:
                setattr(self, f.name, now)
        pk = getattr(self, self._pk)
        if pk is None:
            values = {n: getattr(self, n) for n in self._fields if n != self._pk}
            values = {n: v for n, v in values.items() if v is not None}
            columns = ", ".join(values)
            marks = ", ".join("?" for _ in values)
            sql = f"INSERT INTO {self.__table__} ({columns}) VALUES ({marks}) RETURNING *"
            result = await database.run(sql, list(values.values()))
        else:
            names = [n for n in self._fields if n != self._pk]
            sets = ", ".join(f"{n} = ?" for n in names)
            sql = f"UPDATE {self.__table__} SET {sets} WHERE {self._pk} = ? RETURNING *"
            result = await database.run(sql, [getattr(self, n) for n in names] + [pk])
            if not result.rows:
                raise self.DoesNotExist(f"{type(self).__name__} {self._pk}={pk} no longer exists")
        self._load(result.rows[0])

    async def refresh(self) -> None:
        """Re-read every field from the database (``DoesNotExist`` if the row is gone)."""
        fresh = await type(self).get(**{self._pk: getattr(self, self._pk)})
        self._load(fresh.as_dict())

    def _load(self, row: Mapping[str, Any]) -> None:
        for name in self._fields:
            if name in row:
                setattr(self, name, row[name])


def _describe(eq: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={getattr(v, 'value', v)!r}" for k, v in eq.items()) or "no filter"


class QuerySet(Generic[M]):
    """A lazy query. Chain ``filter``/``order_by``/``limit``; ``await`` a terminal method."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self._where: dict[str, Any] = {}
        self._order: tuple[str, ...] = ()
        self._limit: int | None = None

    def _clone(self) -> QuerySet[M]:
        clone = QuerySet(self.model)
        clone._where = dict(self._where)
        clone._order = self._order
        clone._limit = self._limit
        return clone

    def _check(self, names: Any) -> None:
        unknown = [n for n in names if n not in self.model._fields]
        if unknown:
            raise TypeError(
                f"{self.model.__name__} has no field {', '.join(unknown)} "
                f"(fields: {', '.join(self.model._fields)})"
            )

    def filter(self, **eq: Any) -> QuerySet[M]:
        self._check(eq)
        clone = self._clone()
        clone._where.update(eq)
        return clone

    def order_by(self, *columns: str) -> QuerySet[M]:
        """Sort by fields; ``"-id"`` sorts descending."""
        self._check(c.lstrip("-") for c in columns)
        clone = self._clone()
        clone._order = columns
        return clone

    def limit(self, n: int) -> QuerySet[M]:
        if n < 0:
            raise ValueError("limit must not be negative")
        clone = self._clone()
        clone._limit = n
        return clone

    def _where_sql(self) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for name, value in self._where.items():
            if value is None:
                clauses.append(f"{name} IS NULL")
            else:
                clauses.append(f"{name} = ?")
                params.append(self.model._fields[name].to_python(value))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def _select_sql(self, columns: str = "*") -> tuple[str, list[Any]]:
        where, params = self._where_sql()
        sql = f"SELECT {columns} FROM {self.model.__table__}{where}"
        if self._order:
            sql += " ORDER BY " + ", ".join(
                f"{c[1:]} DESC" if c.startswith("-") else c for c in self._order
            )
        if self._limit is not None:
            sql += f" LIMIT {int(self._limit)}"
        return sql, params

    async def all(self) -> list[M]:
        sql, params = self._select_sql()
        result = await current_database().run(sql, params)
        return [self.model.from_row(row) for row in result.rows]

    def __await__(self) -> Generator[Any, None, list[M]]:
        return self.all().__await__()

    async def first(self) -> M | None:
        rows = await self.limit(1).all()
        return rows[0] if rows else None

    async def count(self) -> int:
        where, params = self._where_sql()
        result = await current_database().run(
            f"SELECT COUNT(*) AS n FROM {self.model.__table__}{where}", params
        )
        return int(result.rows[0]["n"])

    async def exists(self) -> bool:
        return await self.first() is not None

    async def update(self, **values: Any) -> int:
        """Set fields on every matching row in one statement; return how many rows changed."""
        if self._limit is not None or self._order:
            raise TypeError("update() does not take order_by()/limit(): filter on the id instead")
        self._check(values)
        fields = self.model._fields
        values = {n: fields[n].to_python(v) for n, v in values.items()}
        for f in fields.values():
            if f.auto_now and f.name not in values:
                values[f.name] = utcnow()
        where, params = self._where_sql()
        sets = ", ".join(f"{n} = ?" for n in values)
        result = await current_database().run(
            f"UPDATE {self.model.__table__} SET {sets}{where}", [*values.values(), *params]
        )
        return result.rowcount

    async def delete(self) -> int:
        """Delete every matching row; return how many."""
        where, params = self._where_sql()
        result = await current_database().run(f"DELETE FROM {self.model.__table__}{where}", params)
        return result.rowcount
