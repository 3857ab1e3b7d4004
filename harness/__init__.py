"""The campaign-jobs kata harness: what ``candidate/solution.py`` may import.

    from harness import Job, JobStatus, Step, transaction, execute_sql, db, send_email, ...

Everything public is re-exported here and listed in ``__all__``; the modules behind it are the
harness's own business: the database layer in ``harness.sql`` (ORM, models, backends, pool,
transactions), the fake APIs in ``harness.world``, the worker runner in ``harness.worker``.
"""

from __future__ import annotations

from .exceptions import (
    DoesNotExist,
    HarnessError,
    IdempotencyKeyReusedError,
    InvalidEmailError,
    MessageNotFoundError,
    MultipleObjectsReturned,
    PoolTimeout,
    RateLimitError,
    ServiceError,
    ServiceTimeoutError,
    WorkerCrashed,
)
from .sql.config import DatabaseConfig
from .sql.database import Database, current_database, db, execute_sql, open_database
from .sql.models import MAX_ATTEMPTS, Campaign, Job, JobStatus, Step
from .sql.orm import utcnow
from .sql.transactions import current_transaction, transaction
from .world.account import SEND_RATE_PER_SECOND
from .world.services import analyze_sentiment, get_reply, route_customer, send_email

__all__ = [
    "MAX_ATTEMPTS",
    "SEND_RATE_PER_SECOND",
    "Campaign",
    "Database",
    "DatabaseConfig",
    "DoesNotExist",
    "HarnessError",
    "IdempotencyKeyReusedError",
    "InvalidEmailError",
    "Job",
    "JobStatus",
    "MessageNotFoundError",
    "MultipleObjectsReturned",
    "PoolTimeout",
    "RateLimitError",
    "ServiceError",
    "ServiceTimeoutError",
    "Step",
    "WorkerCrashed",
    "analyze_sentiment",
    "current_database",
    "current_transaction",
    "db",
    "execute_sql",
    "get_reply",
    "open_database",
    "route_customer",
    "send_email",
    "transaction",
    "utcnow",
]
