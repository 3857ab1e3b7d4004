"""Every exception the harness raises, in one place.

    HarnessError
    ├── DoesNotExist                 (each model has its own subclass: Job.DoesNotExist)
    ├── MultipleObjectsReturned
    ├── NaiveDatetimeError           (also a TypeError) a datetime without a zone, refused
    ├── PoolTimeout                  (also a TimeoutError)
    ├── NoActiveDatabase
    ├── NoActiveServices
    ├── PrivilegeRefused             the database refused a solution's reach outside its own schema
    ├── SetupRefused                 setup_db.py will not touch tables it did not create
    ├── TooManyParameters            a statement over 65,535 parameters, on every backend
    └── ServiceError                 (what the fake external APIs raise)
        ├── RateLimitError           transient: wait ``retry_after`` seconds, then retry
        ├── ServiceTimeoutError      transient, a TimeoutError: may or may not have taken effect
        ├── InvalidEmailError        permanent: retrying is a mistake
        ├── MessageNotFoundError     permanent: get_reply for a message id that was never sent
        └── IdempotencyKeyReusedError  permanent: the same key was sent with other arguments

    BaseException
    ├── WorkerCrashed                a killed process; `except Exception` cannot swallow it
    └── RoundTripBudgetExceeded      the grader stopped a run that went over its round-trip budget

    UserWarning
    └── LeastPrivilegeWarning        PostgreSQL: the grading's code could not get a role of its own

Errors from the database drivers are *not* mapped: the candidate sees what aiosqlite or psycopg
raised, with the SQL attached as a note, because reading a real driver error is part of the job.
The one exception is ``PrivilegeRefused``: a statement the grading's least privilege refused (a
role that owns only the grading's schema on PostgreSQL, an authorizer on SQLite) says what it
tried and where, instead of the drivers' "permission denied" or "not authorized".
"""

from __future__ import annotations

from datetime import datetime

__all__ = [
    "DoesNotExist",
    "HarnessError",
    "IdempotencyKeyReusedError",
    "InvalidEmailError",
    "LeastPrivilegeWarning",
    "MessageNotFoundError",
    "MultipleObjectsReturned",
    "NaiveDatetimeError",
    "NoActiveDatabase",
    "NoActiveServices",
    "PoolTimeout",
    "PrivilegeRefused",
    "RateLimitError",
    "RoundTripBudgetExceeded",
    "ServiceError",
    "ServiceTimeoutError",
    "SetupRefused",
    "TooManyParameters",
    "WorkerCrashed",
]


class HarnessError(Exception):
    """Base class of every error the harness itself raises."""


class DoesNotExist(HarnessError):
    """``Model.get()`` found no row. Each model has a subclass, e.g. ``Job.DoesNotExist``."""


class MultipleObjectsReturned(HarnessError):
    """``Model.get()`` found more than one row."""


class NaiveDatetimeError(HarnessError, TypeError):
    """A ``datetime`` without a time zone was given to the database: as a SQL parameter, or to
    a timestamp field of a model. A real driver stores it as if it were in the server's or the
    session's zone, hours off UTC on most machines, so the harness refuses it on every backend
    and names the line that sent it. ``harness.utcnow()`` or ``datetime.now(timezone.utc)`` is
    aware.

    ``target`` says where it was going ("parameter 2 of `UPDATE jobs ...`", "Job.claimed_at"),
    ``site`` is the line of the program's code (``solution.py:12 in f()``), when one is on the
    stack.
    """

    def __init__(self, value: datetime, target: str, site: str | None = None):
        where = f" at {site}" if site else ""
        super().__init__(
            f"a naive datetime (no time zone) was sent to the database{where}: "
            f"{value.isoformat(sep=' ')} as {target} — a real driver would store it in the "
            "server's zone, hours off UTC: use harness.utcnow() or datetime.now(timezone.utc), "
            "never datetime.utcnow() or datetime.now()"
        )
        self.value = value
        self.target = target
        self.site = site


class PoolTimeout(HarnessError, TimeoutError):
    """No pooled connection became free within the pool's acquisition timeout.

    The message says how long the caller waited and what the pool looked like at that moment,
    because "the pool is exhausted" is only useful next to "by whom".
    """

    def __init__(self, message: str, *, waited: float, max_size: int, in_use: int, waiting: int):
        super().__init__(message)
        self.waited = waited
        self.max_size = max_size
        self.in_use = in_use
        self.waiting = waiting


class NoActiveDatabase(HarnessError):
    """A query ran outside ``async with open_database(...)`` (the grader and runner open one)."""


class NoActiveServices(HarnessError):
    """An external API was called while no fake services were active."""


class PrivilegeRefused(HarnessError):
    """The database refused a statement because the grading's code may reach only the grading's
    own database: on PostgreSQL a role that owns the grading's schema and nothing else, on SQLite
    an authorizer that refuses ``ATTACH``, extensions and pragmas that change the file or schema.

    ``action`` says what was refused ("ATTACH another database file"), ``sql`` is the statement
    and ``site`` the line of the program's code that sent it (``solution.py:12 in f()``), when
    one is on the stack. Raised ``from`` the driver's own error.
    """

    def __init__(self, action: str, sql: str, site: str | None = None):
        statement = " ".join(sql.split())
        if len(statement) > 120:
            statement = statement[:117] + "..."
        where = f" at {site}" if site else ""
        super().__init__(f"the grader does not let a solution {action} (`{statement}`{where})")
        self.action = action
        self.sql = sql
        self.site = site


class LeastPrivilegeWarning(UserWarning):
    """The configured PostgreSQL user can create neither roles nor schemas owned by one, so the
    grading's code runs as that user, with all of its privileges, instead of a role of its own."""


class SetupRefused(HarnessError):
    """The database holds kata tables (or a schema) that ``setup_db.py`` did not create, so it
    refuses to write into them or drop them."""


class TooManyParameters(HarnessError):
    """A statement carried more parameters than one statement may: 65,535, PostgreSQL's limit.

    The harness refuses it on every backend (SQLite as built here would take 250,000), so that a
    batch size that breaks on the production database breaks on the practice one too. Nothing
    was sent: the connection and its transaction are untouched.
    """

    def __init__(self, count: int, limit: int, sql: str = ""):
        super().__init__(
            f"this statement has {count:,} parameters; one statement takes at most {limit:,} "
            "(PostgreSQL's limit, enforced on every backend) — send fewer rows per statement"
        )
        self.count = count
        self.limit = limit
        self.sql = sql


class ServiceError(HarnessError):
    """Base class of every error a fake external API raises.

    ``service`` names the API (``"sendgrid"``, ``"sentiment"``, ``"crm"``), ``status`` is the HTTP
    status the real API would have answered with (0 when no response arrived).
    """

    transient: bool = False

    def __init__(self, message: str, *, service: str = "", status: int = 0):
        super().__init__(message)
        self.service = service
        self.status = status


class RateLimitError(ServiceError):
    """HTTP 429. Transient: the same request may be retried once ``retry_after`` seconds passed.

    ``reset_at`` is the wall-clock UNIX time the window resets, as SendGrid's
    ``X-RateLimit-Reset`` header gives it.
    """

    transient = True

    def __init__(self, message: str, *, retry_after: float, reset_at: float, service: str = ""):
        super().__init__(message, service=service, status=429)
        self.retry_after = retry_after
        self.reset_at = reset_at


class ServiceTimeoutError(ServiceError, TimeoutError):
    """No response in time. Transient, and ambiguous: the request may already have taken effect,
    so only a retry with the same idempotency key is safe."""

    transient = True


class InvalidEmailError(ServiceError):
    """HTTP 400 for a recipient address. Permanent: the same request will never succeed.

    ``field`` and ``reason`` say what the API rejected, as SendGrid's error body does.
    """

    def __init__(
        self,
        message: str,
        *,
        email: str,
        field: str = "personalizations.0.to.0.email",
        reason: str = "Does not contain a valid address.",
        service: str = "",
    ):
        super().__init__(message, service=service, status=400)
        self.email = email
        self.field = field
        self.reason = reason


class MessageNotFoundError(ServiceError):
    """HTTP 404: no message has this id (a send that timed out may never have been delivered)."""

    def __init__(self, message: str, *, message_id: str, service: str = ""):
        super().__init__(message, service=service, status=404)
        self.message_id = message_id


class IdempotencyKeyReusedError(ServiceError):
    """HTTP 422 (as Stripe answers): an idempotency key came back with different arguments."""

    def __init__(self, message: str, *, key: str, service: str = ""):
        super().__init__(message, service=service, status=422)
        self.key = key


class WorkerCrashed(BaseException):
    """The harness killed this worker at an injected crash point.

    A ``BaseException`` on purpose: a real ``kill -9`` cannot be caught, and a candidate's
    ``except Exception`` must not be able to pretend the process survived.
    """

    def __init__(self, point: str):
        super().__init__(f"worker crashed (injected) {point}")
        self.point = point


class RoundTripBudgetExceeded(BaseException):
    """A statement would have gone over the round-trip budget the grader set.

    A ``BaseException``, like ``WorkerCrashed``: the grader stops the candidate's code here, and
    a broad ``except Exception`` in that code must not turn the stop into a silent success.
    """

    def __init__(self, limit: int, writes: int):
        super().__init__(f"round-trip budget of {limit} exhausted ({writes} writes so far)")
        self.limit = limit
        self.writes = writes
