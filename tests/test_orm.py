"""The tiny ORM on both backends: field types round-trip, querysets, get/save/refresh, and the
schema's constraints and transition trigger as the candidate meets them."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from harness.exceptions import DoesNotExist, MultipleObjectsReturned, NaiveDatetimeError
from harness.sql.database import Database, execute_sql
from harness.sql.models import Campaign, Job, JobStatus, JobTransition, Step
from harness.sql.orm import utcnow

UNIQUE_VIOLATION = {"sqlite": sqlite3.IntegrityError, "postgresql": psycopg.errors.UniqueViolation}
CHECK_VIOLATION = {"sqlite": sqlite3.IntegrityError, "postgresql": psycopg.errors.CheckViolation}

# Microseconds on purpose: both backends must keep them.
WHEN = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
INDIA = timezone(timedelta(hours=5, minutes=30))


@pytest.fixture
async def campaign(database: Database) -> Campaign:
    return await Campaign.create(name="spring sale")


async def make_jobs(campaign: Campaign, *emails: str, **fields: object) -> list[Job]:
    return [await Job.create(campaign_id=campaign.id, email=email, **fields) for email in emails]


def assert_utc(value: datetime) -> None:
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


# --- create / get round trips -------------------------------------------------------------------


async def test_create_fills_the_id_and_defaults(campaign: Campaign) -> None:
    before = utcnow()
    job = await Job.create(campaign_id=campaign.id, email="ada@example.com")
    assert isinstance(job.id, int)
    assert job.status is JobStatus.PENDING
    assert job.step is Step.SEND_EMAIL
    assert job.attempts == 0
    assert (job.worker_id, job.last_error, job.message_id, job.claimed_at) == (None,) * 4
    for stamp in (job.run_after, job.created_at, job.updated_at):
        assert_utc(stamp)
        assert stamp >= before


async def test_every_field_type_round_trips(campaign: Campaign) -> None:
    created = await Job.create(
        campaign_id=campaign.id,
        email="ada@example.com",
        status=JobStatus.RUNNING,
        step=Step.TAKE_ACTION,
        worker_id="worker-7",
        attempts=3,
        last_error=None,
        message_id="msg-1",
        sentiment="positive",
        action_id=None,
        run_after=WHEN,
        claimed_at=WHEN + timedelta(microseconds=1),
    )
    fetched = await Job.get(id=created.id)

    assert fetched == created
    assert fetched.id == created.id
    assert fetched.campaign_id == campaign.id
    assert (fetched.email, fetched.worker_id, fetched.attempts) == (
        "ada@example.com",
        "worker-7",
        3,
    )
    assert (fetched.last_error, fetched.action_id) == (None, None)
    assert (fetched.message_id, fetched.sentiment) == ("msg-1", "positive")
    assert fetched.status is JobStatus.RUNNING
    assert fetched.step is Step.TAKE_ACTION
    assert fetched.run_after == WHEN
    assert fetched.claimed_at == WHEN + timedelta(microseconds=1)
    for stamp in (fetched.run_after, fetched.claimed_at, fetched.created_at, fetched.updated_at):
        assert stamp is not None
        assert_utc(stamp)


async def test_aware_datetime_in_another_zone_is_stored_and_returned_as_utc(
    campaign: Campaign,
) -> None:
    local = datetime(2031, 5, 6, 12, 38, 9, 123456, tzinfo=INDIA)  # == WHEN
    job = await Job.create(campaign_id=campaign.id, email="ada@example.com", run_after=local)
    fetched = await Job.get(id=job.id)
    assert fetched.run_after == WHEN
    assert_utc(fetched.run_after)
    assert (fetched.run_after.hour, fetched.run_after.microsecond) == (7, 123456)


async def test_a_naive_datetime_is_refused_as_a_parameter_and_in_a_saved_field(
    campaign: Campaign,
) -> None:
    """One rule on both backends: a datetime without a zone never reaches a driver, which would
    store it in a zone of its own choosing; the error names the line that sent it."""
    naive = datetime(2031, 5, 6, 7, 8, 9)  # no tzinfo: the point of the test
    with pytest.raises(NaiveDatetimeError, match=r"naive datetime .* at test_orm\.py:\d+"):
        await execute_sql("SELECT id FROM jobs WHERE run_after <= ?", [naive])
    job = await Job.create(campaign_id=campaign.id, email="ada@example.com")
    with pytest.raises(NaiveDatetimeError, match=r"as Job\.claimed_at"):
        job.claimed_at = naive
    await job.save()
    with pytest.raises(NaiveDatetimeError, match=r"as Job\.run_after"):
        await Job.create(campaign_id=campaign.id, email="grace@example.com", run_after=naive)
    assert (await Job.get(id=job.id)).claimed_at is None  # nothing was written


async def test_from_row_builds_a_job_from_an_execute_sql_row(campaign: Campaign) -> None:
    [job] = await make_jobs(campaign, "ada@example.com", worker_id="w1", run_after=WHEN)
    [row] = await execute_sql("SELECT *, 42 AS extra FROM jobs WHERE id = ?", [job.id])
    built = Job.from_row(row)
    assert built == job
    assert built.status is JobStatus.PENDING
    assert built.run_after == WHEN
    assert_utc(built.created_at)


# --- querysets ----------------------------------------------------------------------------------


async def test_filter_matches_on_every_given_field(campaign: Campaign) -> None:
    other = await Campaign.create(name="other")
    await make_jobs(campaign, "a@example.com", "b@example.com")
    await make_jobs(campaign, "c@example.com", status=JobStatus.RUNNING, worker_id="w1")
    await make_jobs(other, "a@example.com")

    found = await Job.filter(campaign_id=campaign.id, status=JobStatus.PENDING).order_by("id")
    assert [job.email for job in found] == ["a@example.com", "b@example.com"]
    running = await Job.filter(campaign_id=campaign.id, status="running", worker_id="w1").all()
    assert [job.email for job in running] == ["c@example.com"]


async def test_filter_on_none_matches_null(campaign: Campaign) -> None:
    await make_jobs(campaign, "a@example.com", "b@example.com")
    await make_jobs(campaign, "c@example.com", worker_id="w1")
    unclaimed = await Job.filter(campaign_id=campaign.id, worker_id=None).order_by("email").all()
    assert [job.email for job in unclaimed] == ["a@example.com", "b@example.com"]


async def test_order_by_ascending_descending_and_limit(campaign: Campaign) -> None:
    jobs = await make_jobs(campaign, "a@example.com", "b@example.com", "c@example.com")
    ids = [job.id for job in jobs]
    assert [job.id for job in await Job.all().order_by("id")] == ids
    assert [job.id for job in await Job.all().order_by("-id")] == ids[::-1]
    assert [job.id for job in await Job.all().order_by("-id").limit(2)] == ids[:0:-1]
    assert await Job.all().limit(0) == []


async def test_querysets_are_lazy_and_chaining_returns_a_copy(campaign: Campaign) -> None:
    await make_jobs(campaign, "a@example.com", "b@example.com")
    everyone = Job.filter(campaign_id=campaign.id)
    first_only = everyone.order_by("id").limit(1)
    assert len(await everyone) == 2
    assert len(await first_only) == 1


async def test_first_on_an_empty_result_is_none(database: Database) -> None:
    assert await Job.filter(status=JobStatus.RUNNING).first() is None


async def test_first_returns_the_first_row_in_order(campaign: Campaign) -> None:
    jobs = await make_jobs(campaign, "a@example.com", "b@example.com")
    first = await Job.all().order_by("-id").first()
    assert first == jobs[-1]


async def test_count(campaign: Campaign) -> None:
    assert await Job.all().count() == 0
    await make_jobs(campaign, "a@example.com", "b@example.com", "c@example.com")
    await make_jobs(campaign, "d@example.com", status=JobStatus.FAILED)
    assert await Job.all().count() == 4
    assert await Job.filter(status=JobStatus.PENDING).count() == 3
    assert await Job.filter(last_error=None, status="failed").count() == 1


async def test_update_returns_how_many_rows_changed(campaign: Campaign) -> None:
    a, _b, _c = await make_jobs(campaign, "a@example.com", "b@example.com", "c@example.com")
    assert await Job.filter(status=JobStatus.RUNNING).update(attempts=9) == 0
    assert await Job.filter(id=a.id).update(status=JobStatus.RUNNING, worker_id="w1") == 1
    assert await Job.filter(status=JobStatus.PENDING).update(attempts=2) == 2
    assert await Job.filter(campaign_id=campaign.id).update(last_error="boom") == 3

    await a.refresh()
    assert (a.status, a.worker_id, a.attempts, a.last_error) == (
        JobStatus.RUNNING,
        "w1",
        0,
        "boom",
    )
    assert await Job.filter(attempts=2).count() == 2


async def test_update_that_claims_only_pending_rows_tells_the_loser(campaign: Campaign) -> None:
    [job] = await make_jobs(campaign, "a@example.com")
    claim = Job.filter(id=job.id, status=JobStatus.PENDING)
    assert await claim.update(status=JobStatus.RUNNING, worker_id="w1") == 1
    assert await claim.update(status=JobStatus.RUNNING, worker_id="w2") == 0
    assert (await Job.get(id=job.id)).worker_id == "w1"


async def test_update_sets_updated_at(campaign: Campaign) -> None:
    [job] = await make_jobs(campaign, "a@example.com")
    yesterday = utcnow() - timedelta(days=1)
    await execute_sql("UPDATE jobs SET updated_at = ? WHERE id = ?", [yesterday, job.id])
    await job.refresh()
    assert job.updated_at == yesterday

    before = utcnow()
    await Job.filter(id=job.id).update(attempts=1)
    await job.refresh()
    assert job.updated_at >= before
    assert_utc(job.updated_at)


async def test_update_refuses_order_by_and_limit(database: Database) -> None:
    with pytest.raises(TypeError, match="filter on the id"):
        await Job.all().order_by("id").limit(1).update(attempts=1)


# --- get ----------------------------------------------------------------------------------------


async def test_get_raises_the_models_does_not_exist(database: Database) -> None:
    with pytest.raises(Job.DoesNotExist, match="no Job with id=12345") as caught:
        await Job.get(id=12345)
    assert isinstance(caught.value, DoesNotExist)
    assert not isinstance(caught.value, Campaign.DoesNotExist)


async def test_get_raises_multiple_objects_returned(campaign: Campaign) -> None:
    await make_jobs(campaign, "a@example.com", "b@example.com")
    with pytest.raises(MultipleObjectsReturned, match="more than one Job"):
        await Job.get(campaign_id=campaign.id)


# --- save / refresh -----------------------------------------------------------------------------


async def test_save_writes_every_field_of_a_changed_instance(campaign: Campaign) -> None:
    [job] = await make_jobs(campaign, "a@example.com", worker_id="w1", last_error="old")
    job.status = JobStatus.COMPLETED
    job.step = Step.DONE
    job.worker_id = None
    job.attempts = 4
    job.last_error = None
    job.message_id = "msg-9"
    job.sentiment = "neutral"
    job.action_id = "act-9"
    job.run_after = WHEN
    job.claimed_at = WHEN
    before = utcnow()
    await job.save()
    assert job.updated_at >= before

    fetched = await Job.get(id=job.id)
    assert fetched == job
    assert (fetched.status, fetched.step) == (JobStatus.COMPLETED, Step.DONE)
    assert (fetched.worker_id, fetched.last_error) == (None, None)
    assert (fetched.attempts, fetched.message_id, fetched.sentiment, fetched.action_id) == (
        4,
        "msg-9",
        "neutral",
        "act-9",
    )
    assert fetched.run_after == fetched.claimed_at == WHEN


async def test_save_of_a_deleted_row_raises_does_not_exist(campaign: Campaign) -> None:
    [job] = await make_jobs(campaign, "a@example.com")
    await execute_sql("DELETE FROM jobs WHERE id = ?", [job.id])
    job.attempts = 1
    with pytest.raises(Job.DoesNotExist):
        await job.save()


async def test_refresh_rereads_a_row_changed_by_raw_sql(campaign: Campaign) -> None:
    [job] = await make_jobs(campaign, "a@example.com")
    await execute_sql(
        "UPDATE jobs SET status = ?, step = ?, attempts = attempts + 2, claimed_at = ?"
        " WHERE id = ?",
        [JobStatus.RUNNING, Step.ANALYZE, WHEN, job.id],
    )
    await job.refresh()
    assert job.status is JobStatus.RUNNING
    assert job.step is Step.ANALYZE
    assert job.attempts == 2
    assert job.claimed_at == WHEN


async def test_unknown_field_raises_type_error_naming_the_fields(database: Database) -> None:
    with pytest.raises(TypeError, match=r"Job has no field state \(fields: id, campaign_id, "):
        Job.filter(state="pending")
    with pytest.raises(TypeError, match="no field priority"):
        Job.all().order_by("-priority")
    with pytest.raises(TypeError, match="no field colour"):
        await Job.all().update(colour="red")


# --- timestamps in SQL --------------------------------------------------------------------------


async def test_timestamps_compare_correctly_as_sql_parameters(campaign: Campaign) -> None:
    now = utcnow()
    [due] = await make_jobs(campaign, "due@example.com", run_after=now - timedelta(seconds=1))
    await make_jobs(campaign, "later@example.com", run_after=now + timedelta(minutes=1))

    rows = await execute_sql("SELECT id FROM jobs WHERE run_after <= ?", [datetime.now(UTC)])
    assert [row["id"] for row in rows] == [due.id]
    # The same instant written in another zone compares as that instant, not as its text.
    rows = await execute_sql("SELECT id FROM jobs WHERE run_after <= ?", [datetime.now(INDIA)])
    assert [row["id"] for row in rows] == [due.id]


async def test_timestamps_order_by_instant(campaign: Campaign) -> None:
    now = utcnow()
    early, late = await make_jobs(campaign, "early@example.com", "late@example.com")
    await Job.filter(id=late.id).update(run_after=now + timedelta(microseconds=10))
    await Job.filter(id=early.id).update(
        run_after=(now + timedelta(microseconds=9)).astimezone(INDIA)
    )
    ordered = await Job.all().order_by("run_after")
    assert [job.id for job in ordered] == [early.id, late.id]


# --- constraints and the transition trigger -----------------------------------------------------


async def test_duplicate_campaign_and_email_raises_the_drivers_unique_violation(
    database: Database, campaign: Campaign
) -> None:
    await make_jobs(campaign, "ada@example.com")
    with pytest.raises(UNIQUE_VIOLATION[database.dialect]) as caught:
        await Job.create(campaign_id=campaign.id, email="ada@example.com")
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "while running SQL: INSERT INTO jobs" in notes
    assert "ada@example.com" in notes
    assert await Job.all().count() == 1


async def test_same_email_in_another_campaign_is_allowed(campaign: Campaign) -> None:
    other = await Campaign.create(name="other")
    await make_jobs(campaign, "ada@example.com")
    await make_jobs(other, "ada@example.com")
    assert await Job.filter(email="ada@example.com").count() == 2


async def test_email_check_rejects_what_is_not_an_address(
    database: Database, campaign: Campaign
) -> None:
    with pytest.raises(CHECK_VIOLATION[database.dialect]) as caught:
        await execute_sql(
            "INSERT INTO jobs (campaign_id, email) VALUES (?, ?)", [campaign.id, "not-an-email"]
        )
    assert any("INSERT INTO jobs" in note for note in caught.value.__notes__)
    assert await Job.all().count() == 0


async def test_every_status_or_step_change_records_one_transition(campaign: Campaign) -> None:
    [job] = await make_jobs(campaign, "a@example.com")
    assert await JobTransition.all().count() == 0

    await Job.filter(id=job.id).update(status=JobStatus.RUNNING, worker_id="w1")
    await execute_sql("UPDATE jobs SET step = ? WHERE id = ?", [Step.ANALYZE, job.id])
    await job.refresh()
    job.status, job.step = JobStatus.COMPLETED, Step.DONE
    await job.save()

    transitions = await JobTransition.filter(job_id=job.id).order_by("id").all()
    assert [(t.old_status, t.new_status, t.old_step, t.new_step) for t in transitions] == [
        (JobStatus.PENDING, JobStatus.RUNNING, Step.SEND_EMAIL, Step.SEND_EMAIL),
        (JobStatus.RUNNING, JobStatus.RUNNING, Step.SEND_EMAIL, Step.ANALYZE),
        (JobStatus.RUNNING, JobStatus.COMPLETED, Step.ANALYZE, Step.DONE),
    ]
    assert [t.worker_id for t in transitions] == ["w1", "w1", "w1"]
    for t in transitions:
        assert_utc(t.at)


async def test_changes_that_keep_status_and_step_record_no_transition(campaign: Campaign) -> None:
    [job] = await make_jobs(campaign, "a@example.com")
    await Job.filter(id=job.id).update(attempts=1, last_error="boom")
    await Job.filter(id=job.id).update(status=JobStatus.PENDING, step=Step.SEND_EMAIL)
    await execute_sql("UPDATE jobs SET message_id = 'm', status = status WHERE id = ?", [job.id])
    job.sentiment = "positive"
    await job.save()
    assert await JobTransition.all().count() == 0
