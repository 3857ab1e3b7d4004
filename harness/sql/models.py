"""The kata's models: campaigns, their jobs, and the record of every job transition."""

from __future__ import annotations

import enum
from datetime import datetime

from .orm import Field, Model, utcnow

__all__ = ["MAX_ATTEMPTS", "Campaign", "Customer", "Job", "JobStatus", "JobTransition", "Step"]

#: How many times one step may be tried before the job is failed.
MAX_ATTEMPTS = 5


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class Step(enum.StrEnum):
    """The workflow, in order: send_email -> analyze -> take_action -> done."""

    SEND_EMAIL = "send_email"
    ANALYZE = "analyze"
    TAKE_ACTION = "take_action"
    DONE = "done"

    @property
    def next(self) -> Step:
        """The step after this one (``DONE`` stays ``DONE``)."""
        order = list(Step)
        return order[min(order.index(self) + 1, len(order) - 1)]


class Campaign(Model, table="campaigns"):
    id = Field[int](int, primary_key=True)
    name = Field[str](str)
    created_at = Field[datetime](datetime, default_factory=utcnow)


class Customer(Model, table="customers"):
    """Sample audience made by ``setup_db.py`` (not part of the tasks)."""

    id = Field[int](int, primary_key=True)
    email = Field[str](str)
    name = Field[str](str)
    created_at = Field[datetime](datetime, default_factory=utcnow)


class Job(Model, table="jobs"):
    """One customer of one campaign, walking the workflow. ``(campaign_id, email)`` is unique."""

    id = Field[int](int, primary_key=True)
    campaign_id = Field[int](int)
    email = Field[str](str)
    status = Field[JobStatus](JobStatus, default=JobStatus.PENDING)
    step = Field[Step](Step, default=Step.SEND_EMAIL)
    worker_id = Field["str | None"](str, null=True)
    attempts = Field[int](int, default=0)
    last_error = Field["str | None"](str, null=True)
    message_id = Field["str | None"](str, null=True)
    sentiment = Field["str | None"](str, null=True)
    action_id = Field["str | None"](str, null=True)
    run_after = Field[datetime](datetime, default_factory=utcnow)
    claimed_at = Field["datetime | None"](datetime, null=True)
    created_at = Field[datetime](datetime, default_factory=utcnow)
    updated_at = Field[datetime](datetime, default_factory=utcnow, auto_now=True)


class JobTransition(Model, table="job_transitions"):
    """Written by a database trigger on every change of a job's status or step, whoever made it
    (ORM or raw SQL), so that "advanced exactly once, never went backwards" can be checked."""

    id = Field[int](int, primary_key=True)
    job_id = Field[int](int)
    old_status = Field[JobStatus](JobStatus)
    new_status = Field[JobStatus](JobStatus)
    old_step = Field[Step](Step)
    new_step = Field[Step](Step)
    worker_id = Field["str | None"](str, null=True)
    at = Field[datetime](datetime, default_factory=utcnow)
