"""Hints for the tasks the candidate writes, three levels each: a nudge, the concept, the shape
of the code.

A candidate reads these mid-interview, stuck and short of time. Each level gives away a little
more than the one before: the nudge points at the question to ask, the concept names the
technique and why it works, the shape shows the structure of the code with the details left for
the candidate to fill in. The texts are Markdown; ``python -m harness hint A`` and the ``h`` key
of ``python -m harness dev`` show them one level at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LEVELS", "LEVEL_NAMES", "Hint", "hint", "hints_up_to"]

LEVEL_NAMES = ("a nudge", "the concept", "the shape of the code")
LEVELS = len(LEVEL_NAMES)


@dataclass(frozen=True, kw_only=True)
class Hint:
    task: str
    level: int
    text: str

    @property
    def name(self) -> str:
        return LEVEL_NAMES[self.level - 1]


_TEXTS: dict[str, tuple[str, str, str]] = {
    "A": (
        # --- nudge ---
        """\
Twenty workers call `claim_next_job` at the same instant. If your code *reads* a pending job in
one statement and *marks* it running in another, what can a second worker do in between?

And when a worker loses that race, what does it do next: return `None` while claimable jobs are
still waiting? The grader treats that as giving up early.""",
        # --- concept ---
        """\
Make choosing the job and claiming it **one statement**, so that there is no gap between them:

    UPDATE jobs SET status = 'running', ...
     WHERE id = (SELECT id FROM jobs WHERE <claimable>
                  ORDER BY id LIMIT 1)
    RETURNING *

The database picks the row and marks it in one step, and `RETURNING *` hands you the claimed row
without another round trip (`Job.from_row(row)` turns it into a `Job`). The claimable job with
the lowest id goes first: `ORDER BY id`, so a lone worker claims in id order.

- **PostgreSQL**: add `FOR UPDATE SKIP LOCKED` to the sub-select. `FOR UPDATE` locks the row it
  picks; without it, two workers' sub-selects can pick the same id and both UPDATEs succeed.
  `SKIP LOCKED` makes the second worker take the next row instead of waiting for the first.
- **SQLite** has no row locks, and needs none here: a single write statement holds the database's
  write lock for its whole duration. `db.dialect` tells you which backend you are on.
- A transaction is not a lock. On PostgreSQL, wrapping a SELECT and an UPDATE in
  `transaction()` still lets two workers read the same pending row.
- A read followed by an update only works if the update re-checks the whole claimable
  condition, `status = 'pending' AND run_after <= ?` (the grader changes the row between your
  read and your write), and you **try again** when it changed nothing. Returning `None` is only
  right when the queue is empty.
- Times are timezone-aware UTC: pass `utcnow()`, never a naive `datetime.now()`.""",
        # --- shape ---
        """\
```python
_CLAIM = \"\"\"
UPDATE jobs
   SET status = 'running', worker_id = ?, claimed_at = ?, updated_at = ?
 WHERE id = (SELECT id FROM jobs
              WHERE status = 'pending' AND run_after <= ?
              ORDER BY id
              LIMIT 1{lock})
RETURNING *
\"\"\"

async def claim_next_job(worker_id: str) -> Job | None:
    now = utcnow()
    lock = ...   # " FOR UPDATE SKIP LOCKED" on PostgreSQL, "" on SQLite
    rows = await execute_sql(_CLAIM.format(lock=lock), [...])   # one value per ?
    return Job.from_row(rows[0]) if rows else None
```""",
    ),
    "B": (
        """\
Count the round trips. Every statement costs one (the SQLite backend simulates 1 ms each):
how long do 50,000 `Job.create(...)` calls take?

Then imagine address 30,000 is rejected: which jobs exist afterwards? And what happens when the
same campaign is created a second time, or when an address appears twice in the list?""",
        """\
Send **many rows per statement**: a multi-row
`INSERT INTO jobs (campaign_id, email) VALUES (?, ?), (?, ?), ...`, in batches.

- **Batch size**: one statement takes at most 65,535 `?` parameters, on both backends
  (PostgreSQL's limit; the harness holds SQLite to it too). At 2 parameters a row, a few
  thousand rows per batch stay well under it, and 50,000 rows fit in far fewer than the 250
  round trips the grader allows (every statement counts, `BEGIN` and `COMMIT` too).
- **All or nothing**: run every batch inside one `async with transaction():`, so a failure
  part-way rolls all of them back.
- **Re-runs**: let the unique `(campaign_id, email)` constraint do the work.
  `ON CONFLICT (campaign_id, email) DO NOTHING RETURNING id` skips rows that exist and returns
  only the ones it inserted, so `len(rows)` counts what this call created.
- **Duplicates in the input**: de-duplicate before inserting; `list(dict.fromkeys(emails))`
  keeps the original order. Store each address exactly as given: duplicates are exact string
  duplicates, so no lower-casing or trimming. Without `ON CONFLICT`, a repeated address breaks
  the unique constraint and fails the whole campaign.
- **Empty list**: `VALUES` with nothing after it is a syntax error; make sure no statement is
  sent at all.""",
        """\
```python
_BATCH = 2000   # rows per INSERT: 4,000 parameters, far below the 65,535 limit

async def create_campaign_jobs(campaign_id: int, customer_emails: list[str]) -> int:
    emails = list(dict.fromkeys(customer_emails))
    created = 0
    async with transaction():
        for start in range(0, len(emails), _BATCH):
            batch = emails[start : start + _BATCH]
            values = ", ".join("(?, ?)" for _ in batch)
            params = [...]   # campaign_id, email, campaign_id, email, ...
            rows = await execute_sql(
                f"INSERT INTO jobs (campaign_id, email) VALUES {values} "
                "ON CONFLICT (campaign_id, email) DO NOTHING RETURNING id",
                params,
            )
            created += len(rows)
    return created
```""",
    ),
    "C": (
        """\
Not every failure is the same kind. Of `RateLimitError`, `ServiceTimeoutError` and
`InvalidEmailError`, which can succeed if you try again, and which never will? What does each
one tell you about *when* to try again?

And a timeout does not mean nothing happened: if the email went out just before the timeout,
what stops your retry from sending it twice?""",
        """\
Sort the errors into **transient** (retry them) and **permanent** (give up at once):

- `InvalidEmailError` is permanent. Fail the job now, with `last_error`, after exactly one
  attempt. Retrying it is a violation.
- `RateLimitError` is transient and tells you how long to wait: never retry before its
  `.retry_after` seconds have passed, counted from when the 429 arrived.
- `ServiceTimeoutError` is transient, but the request may already have taken effect.

Retry with **exponential backoff plus jitter** (double the delay each attempt, cap it, add a
random fraction so that twenty workers don't retry in lockstep), and wait at least `retry_after`
for a rate limit. Wait with `await asyncio.sleep(...)`: `time.sleep` stops all twenty workers,
and the grader fails it. Keep the waits for one step under 20 s in total.

**One budget per step**: `MAX_ATTEMPTS` tries in all, whatever the mix of rate limits and
timeouts, in one call or across calls. The last try may still succeed; only when it fails too,
mark the job `failed` with `last_error`.

The **idempotency key** makes a retry safe: derive it from the job and the step (say
`f"job-{job.id}-send_email"`), never from the attempt, and never from the address alone (the
same address in two campaigns is two jobs and two emails). Send the same arguments with it every
time (the body is any text you build from the job alone). Then a retry after a timeout that did
deliver gets the same message id back instead of a second email.

Never call the API, or wait out a backoff, inside `transaction()`. The worker would hold a
database connection (on SQLite, the write lock) for the whole wait, and the harness flags it.
Call first, then record the result.

Retrying inside the call is one option (the count lives in the call). The other is returning
the job to the queue: set it `pending` with `attempts + 1` and `run_after` in the future (at most
30 s ahead). Then `attempts` carries the step's count across calls: read it from the row when
the job comes back, and the try made with `attempts` at `MAX_ATTEMPTS - 1` is the last.""",
        """\
```python
async def send_email_step(job: Job) -> None:
    key = f"job-{job.id}-{Step.SEND_EMAIL.value}"   # per job and step: the same on every attempt
    body = ...                                      # the same text on every attempt, too
    for attempt in range(1, MAX_ATTEMPTS + 1):      # one budget for the whole step
        try:
            message_id = await send_email(job.email, body, idempotency_key=key)
            break
        except InvalidEmailError as error:
            ...   # fail the job now: status failed, last_error, attempts = 1
            return
        except (RateLimitError, ServiceTimeoutError) as error:
            if attempt == MAX_ATTEMPTS:
                ...   # fail the job: status failed, last_error, attempts
                return
            delay = min(CAP, BASE * 2 ** (attempt - 1))
            if isinstance(error, RateLimitError):
                delay = max(delay, error.retry_after)
            await asyncio.sleep(delay * (1 + random.random() / 4))   # never time.sleep
    await Job.filter(id=job.id).update(message_id=message_id)   # outside any transaction
    job.message_id = message_id
```""",
    ),
    "D": (
        """\
Assume `process_job` runs twice for the same job: with a stale job object, on two workers at
the same moment, or again after a worker died half-way through. Go through your code line by
line and ask what the *second* run does. Which line would send a second email, perform a second
CRM action, or write an older step over a newer one?""",
        """\
Three habits make a step safe to repeat:

1. **Re-read first.** The job you were given may be stale: load it again, and stop if it is no
   longer `running`.
2. **Idempotent side effects.** Reuse what earlier runs recorded (a `message_id` already
   there means the email was sent). Pass an idempotency key derived from the job and step, so
   that repeating a call returns the earlier result instead of acting twice.
3. **Advance with compare-and-set.** Make the update conditional on the step you ran **and**
   the status: `UPDATE jobs SET step = ?, ... WHERE id = ? AND step = ? AND status = 'running'`,
   or `Job.filter(id=..., step=current, status=JobStatus.RUNNING).update(step=next, ...)`. If
   another worker got there first, or the job left `running` (failed, completed, back in the
   queue) since you read it, nothing changes, and you must not overwrite it. `job.save()` on a
   stale object writes old values back.

Record each step's result (`sentiment`, `action_id`) in the same conditional update that moves
the job on (and set `attempts` back to 0 there: each step has its own budget).

Every API call of every step (`get_reply`, `analyze_sentiment`, `route_customer` too) follows
Task C's rules: transient errors retried within one budget per step (`MAX_ATTEMPTS` tries),
honouring `retry_after`, outside any transaction, with a key per job and step for the CRM.
`InvalidEmailError` and `MessageNotFoundError` are permanent: fail the job with `last_error`. No
`ServiceError` may escape `process_job`.

The worker may also crash. `WorkerCrashed` is a `BaseException`: `except Exception` doesn't catch
it, and you must not try (no `except BaseException`, no bare `except:`), because it stands for a
killed process. The dangerous moment is the crash *between* a side effect and the write that
records it. The next run can't see that the effect happened, so the idempotency key is what
stops it from happening twice.""",
        """\
```python
async def process_job(job: Job) -> None:
    fresh = await Job.filter(id=job.id).first()
    if fresh is None or fresh.status != JobStatus.RUNNING:
        return
    try:
        await run_step(fresh)
    except ServiceError as error:                 # permanent, or MAX_ATTEMPTS tries used up
        ...                                       # fail it (compare-and-set), with last_error

async def run_step(fresh: Job) -> None:           # every call retried as in Task C
    if fresh.step == Step.SEND_EMAIL:
        if fresh.message_id is None:
            await send_email_step(fresh)          # idempotency key: job + step
        await advance(fresh, to=Step.ANALYZE)
    elif fresh.step == Step.ANALYZE:
        sentiment = ...                           # get_reply, then analyze_sentiment
        await advance(fresh, to=Step.TAKE_ACTION, sentiment=sentiment)
    elif fresh.step == Step.TAKE_ACTION:
        action_id = ...                           # route_customer(..., idempotency_key=...)
        await advance(fresh, to=Step.DONE, action_id=action_id)

async def advance(job: Job, to: Step, **fields) -> bool:
    status = JobStatus.COMPLETED if to == Step.DONE else JobStatus.RUNNING
    changed = await Job.filter(id=job.id, step=job.step, status=JobStatus.RUNNING).update(
        step=to, status=status, **fields)
    return changed == 1                           # 0: someone else advanced it first
```""",
    ),
    "F": (
        # --- nudge ---
        """\
Your reaper reads a stalled job, then writes it back to the queue. The job's worker is slow,
not dead: what if it renews its claim (`claimed_at`), or finishes the job, between your read and
your write? And what if another reaper, in another process, runs at the same moment as yours?

Then think of the job that crashes *every* worker that takes it: how many workers does it kill
before your reaper stops handing it out?""",
        # --- concept ---
        """\
A job is **stalled** when it is `running` and its claim is older than the lease:
`status = 'running' AND claimed_at < now - lease` (the claim is `claimed_at`, which a live
worker renews, not `updated_at`; and `timedelta(seconds=lease_seconds)`, not
`timedelta(lease_seconds)`, which is days).

- **No gap**: decide and write in **one statement**, `UPDATE jobs SET ... WHERE status =
  'running' AND claimed_at < ? RETURNING id`. A job renewed a moment earlier no longer matches;
  of two reapers, the second finds the job `pending` and leaves it alone. If you read first,
  the write must re-check what you read (`AND status = 'running' AND claimed_at = ?`, or the
  cutoff again) and change nothing when the row moved on. On PostgreSQL an UPDATE that waited
  for a row's lock re-checks its own WHERE, not a sub-select's: with `WHERE id IN (SELECT ...)`
  repeat the condition outside, or lock the sub-select's rows with `FOR UPDATE SKIP LOCKED`.
- **Count the crash**: a worker that died spent one try of the step, so `attempts + 1`. The
  recovery that brings `attempts` to `MAX_ATTEMPTS` fails the job (with a `last_error`) instead
  of returning it: that is the poison job. `CASE WHEN attempts + 1 >= ? THEN 'failed' ELSE
  'pending' END` decides it in the same statement.
- **Keep the progress**: step, `message_id`, `sentiment`, `action_id` stay; the next worker
  continues where the dead one stopped.
- **Count what you changed**: `len(rows)` of the `RETURNING`, not the rows you read.
- **Thousands at once**: one statement for all of them (or batches of hundreds, looping until
  none is left), never one per job.""",
        # --- shape ---
        """\
```python
_RECOVER = \"\"\"
UPDATE jobs
   SET status = CASE WHEN attempts + 1 >= ? THEN 'failed' ELSE 'pending' END,
       last_error = CASE WHEN attempts + 1 >= ? THEN ? ELSE last_error END,
       attempts = attempts + 1,
       updated_at = ?
 WHERE status = 'running' AND claimed_at < ?
RETURNING id
\"\"\"

async def recover_stalled_jobs(lease_seconds: float) -> int:
    now = utcnow()
    cutoff = now - timedelta(seconds=lease_seconds)
    rows = await execute_sql(_RECOVER, [...])   # MAX_ATTEMPTS twice, the error, now, cutoff
    return len(rows)
```""",
    ),
    "G": (
        # --- nudge ---
        """\
SendGrid counts the sends of the whole *account*. Your twenty workers run in four processes:
if each process keeps its own count, how fast does the account send? Where can four processes
see one count?

Then picture two workers reading that count at the same moment. And a worker whose moment is
half a second away: what does it do meanwhile, and what does it hold while it waits?""",
        # --- concept ---
        """\
Keep the limiter's state **in the database**, the one thing every process shares: `send_rate`
(one row) or `send_slots` (one row per send). Then give each send **its own moment**, one interval
(`1 / SEND_RATE_PER_SECOND`) after the one before, and wait for it.

- **Book, then wait**: the simplest limiter is a schedule. One statement moves `next_send_at`
  on by one interval from the latest of the moment already booked, now, and `paused_until`, and
  returns it: `UPDATE send_rate SET next_send_at = MAX(next_send_at, paused_until, ?) + ?
  ... RETURNING next_send_at` (`GREATEST` on PostgreSQL). The worker's moment is the returned
  value minus one interval; it sleeps until then. One round trip per send, and no race: the
  statement reads and writes the row in one step.
- **Or a token bucket**: refill `tokens` for the time since `refilled_at`, at most 2 tokens
  (a bucket of a second's sends lets twenty workers go at once after a quiet second), take one,
  and let the count go below zero: the worker has booked a token that is not there yet and
  waits `-tokens / SEND_RATE_PER_SECOND`. If you read the row first, write it back only if
  nobody wrote since (`... WHERE id = 1 AND version = ?`) and read again when no row changed.
- **Never wait inside `transaction()`**: commit the booking, then `await asyncio.sleep(...)`.
  A transaction held across the wait holds the row (on SQLite the whole database) and every
  other worker queues behind it.
- **Don't poll**: a worker that asks "is it my turn yet?" every few milliseconds sends the
  database hundreds of statements per email. Work out the moment once, then sleep.
- **A 429 pauses everyone**: the harness writes SendGrid's reset into `paused_until`; no
  moment may come before it.
- **Take the account as you find it**: another process may have booked moments already; never
  reset the row when your process starts.""",
        # --- shape ---
        """\
```python
_INTERVAL = 1 / SEND_RATE_PER_SECOND

_BOOK = \"\"\"
UPDATE send_rate
   SET next_send_at = {greatest}(next_send_at, paused_until, ?) + ?,
       version = version + 1
 WHERE id = 1
RETURNING next_send_at
\"\"\"

async def reserve_send_slot(worker_id: str) -> None:
    greatest = ...                    # "GREATEST" on PostgreSQL, "MAX" on SQLite
    rows = await execute_sql(_BOOK.format(greatest=greatest), [time.time(), _INTERVAL])
    moment = rows[0]["next_send_at"] - _INTERVAL
    await asyncio.sleep(max(0.0, moment - time.time()))   # outside any transaction
```""",
    ),
}

_HINTS: dict[str, tuple[Hint, ...]] = {
    task: tuple(Hint(task=task, level=level, text=text) for level, text in enumerate(texts, 1))
    for task, texts in _TEXTS.items()
}


#: The tasks with hints, as a sentence ("A, B, C, D and F").
_HAVE_HINTS = ", ".join(sorted(_HINTS)[:-1]) + " and " + sorted(_HINTS)[-1]


def hint(task: str, level: int) -> Hint:
    """The hint for ``task`` (A-D) at ``level`` (1 to ``LEVELS``)."""
    task = task.upper()
    if task not in _HINTS:
        raise KeyError(f"no hints for task {task!r}: tasks {_HAVE_HINTS} have hints")
    if not 1 <= level <= LEVELS:
        raise ValueError(f"hint levels go from 1 to {LEVELS}, not {level}")
    return _HINTS[task][level - 1]


def hints_up_to(task: str, level: int) -> list[Hint]:
    """Every hint of ``task`` from the nudge up to ``level``."""
    return [hint(task, n) for n in range(1, min(level, LEVELS) + 1)]
