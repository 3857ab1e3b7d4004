"""Seeded, reproducible fault plans for the fake external APIs.

A ``FaultPlan`` answers one question: *what happens to the n-th call a service receives for this
subject?* (``decide(service, subject, n)``). The answer is a pure function of
``(seed, service, subject, n)``: the random generator is derived from a stable hash of those four
values, never from a shared stream. Twenty workers interleave differently on every run, and a
shared stream would hand each fault to whichever task happened to ask first; deriving per call
means a seed names one concrete scenario that replays identically, however the tasks are scheduled.

Faults a call can meet (all modelled on what SendGrid, a sentiment API and a CRM really do):

* ``RATE_LIMIT``      - HTTP 429 with ``retry_after``; nothing happened.
* ``TIMEOUT_BEFORE``  - no response in time, and the request never took effect.
* ``TIMEOUT_AFTER``   - no response in time, but the request *did* take effect: the classic
                        "did my email go out?" ambiguity that idempotency keys exist for.

A *script* pins the first calls for one (service, subject), e.g. "the first two sends to
a@example.com are rate limited, the third succeeds"; later calls fall back to the random plan.
A scripted ``Succeed`` or ``RateLimit`` may also pin how long its answer takes to arrive.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "DEFAULT_TIMEOUT_SECONDS",
    "SERVICES",
    "Decision",
    "Fault",
    "FaultPlan",
    "Latency",
    "RateLimit",
    "Script",
    "ScriptedOutcome",
    "ServiceFaults",
    "Succeed",
    "TimeoutAfter",
    "TimeoutBefore",
    "stable_digest",
    "stable_random",
]

SERVICES: tuple[str, ...] = ("sendgrid", "sentiment", "crm")
"""Service names, as the fakes, the ledger and fault plans spell them."""

DEFAULT_RETRY_AFTER: tuple[float, float] = (0.05, 0.25)
DEFAULT_TIMEOUT_SECONDS = 0.02

# z-score of the 99th percentile of a standard normal: p99 = median * exp(Z99 * sigma).
_Z99 = 2.3263478740408408

# A lognormal tail is unbounded; one 100x outlier would stall a test run for no insight. Real
# clients cut such requests off with a timeout anyway, so samples are capped at this many p99s.
_LATENCY_CAP_IN_P99S = 4.0


def stable_digest(*parts: object) -> bytes:
    """A hash of ``parts`` that is the same in every process (``hash()`` is salted per process):
    what makes faults, keys and ids reproducible from a seed."""
    return hashlib.sha256(repr(parts).encode("utf-8")).digest()


def stable_random(*parts: object) -> random.Random:
    """A generator seeded from ``stable_digest(parts)``."""
    return random.Random(int.from_bytes(stable_digest(*parts)[:8], "big"))


@dataclass(frozen=True, kw_only=True)
class Latency:
    """Response time as a distribution: lognormal with the given ``median`` and ``p99`` (seconds).

    Real API latency is skewed - most calls are quick, a few are slow - and the slow ones are what
    expose code that holds a lock or a connection across a call. ``median=0`` means no latency.
    """

    median: float = 0.0
    p99: float = 0.0

    def __post_init__(self) -> None:
        if self.median < 0:
            raise ValueError(f"Latency median must be >= 0, got {self.median}")
        if self.median > 0 and self.p99 < self.median:
            raise ValueError(
                f"Latency p99 ({self.p99}) must be >= median ({self.median}); "
                "use Latency.constant(s) for a fixed delay"
            )

    @classmethod
    def none(cls) -> Latency:
        return cls()

    @classmethod
    def constant(cls, seconds: float) -> Latency:
        return cls(median=seconds, p99=seconds)

    def sample(self, rng: random.Random) -> float:
        """Seconds to wait. Draws from ``rng`` even for no latency: callers' draws stay aligned."""
        draw = rng.gauss(0.0, 1.0)
        if self.median <= 0:
            return 0.0
        sigma = math.log(self.p99 / self.median) / _Z99
        return min(self.median * math.exp(sigma * draw), self.p99 * _LATENCY_CAP_IN_P99S)


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} is a probability and must be in [0, 1], got {value}")


@dataclass(frozen=True, kw_only=True)
class ServiceFaults:
    """How one service misbehaves. Rates are per call; their sum is at most 1."""

    rate_limit: float = 0.0
    retry_after: tuple[float, float] = DEFAULT_RETRY_AFTER
    """Uniform range the ``retry_after`` of a 429 is drawn from."""
    timeout_before: float = 0.0
    """Timeout, and the request did not take effect."""
    timeout_after: float = 0.0
    """Timeout, but the request did take effect (the response was lost)."""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    """How long the client waits before a timeout is raised."""
    latency: Latency = field(default_factory=Latency.none)

    def __post_init__(self) -> None:
        for name in ("rate_limit", "timeout_before", "timeout_after"):
            _check_rate(name, getattr(self, name))
        total = self.rate_limit + self.timeout_before + self.timeout_after
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {total:.3f}; they must add up to at most 1")
        low, high = self.retry_after
        if not 0.0 <= low <= high:
            raise ValueError(
                f"retry_after must be a range (low, high) with 0 <= low <= high, "
                f"got {self.retry_after}"
            )
        if self.timeout_seconds < 0:
            raise ValueError(f"timeout_seconds must be >= 0, got {self.timeout_seconds}")


class Fault(StrEnum):
    """What a decided call meets. Values match the ledger's outcome names where they overlap."""

    NONE = "none"
    RATE_LIMIT = "rate_limited"
    TIMEOUT_BEFORE = "timeout_before"
    TIMEOUT_AFTER = "timeout_after"


# Scripted outcomes: tiny value objects so that a script reads like the story it tells.


@dataclass(frozen=True)
class Succeed:
    latency: float | None = None
    """Seconds before the answer arrives; ``None``: the service's own latency."""
    fault: ClassVar[Fault] = Fault.NONE

    def __post_init__(self) -> None:
        _check_latency(self.latency)


@dataclass(frozen=True)
class RateLimit:
    retry_after: float = 0.1
    latency: float | None = None
    """Seconds before the 429 arrives; ``None``: the service's own latency. A slow 429 tells a
    client that counts ``retry_after`` from when the 429 arrived from one that counts it from
    when the request was sent."""
    fault: ClassVar[Fault] = Fault.RATE_LIMIT

    def __post_init__(self) -> None:
        if self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {self.retry_after}")
        _check_latency(self.latency)


def _check_latency(latency: float | None) -> None:
    if latency is not None and latency < 0:
        raise ValueError(f"latency must be >= 0 seconds, got {latency}")


@dataclass(frozen=True)
class TimeoutBefore:
    fault: ClassVar[Fault] = Fault.TIMEOUT_BEFORE


@dataclass(frozen=True)
class TimeoutAfter:
    fault: ClassVar[Fault] = Fault.TIMEOUT_AFTER


ScriptedOutcome = Succeed | RateLimit | TimeoutBefore | TimeoutAfter
Script = Mapping[tuple[str, str], Sequence[ScriptedOutcome]]
"""(service, subject) -> outcomes of the 1st, 2nd, ... call for that subject."""


@dataclass(frozen=True, kw_only=True)
class Decision:
    """What happens to one call: the fault it meets and how long the service takes."""

    outcome: Fault
    latency: float = 0.0
    retry_after: float = 0.0
    """Seconds the 429 asks the client to wait; 0 unless ``outcome`` is ``RATE_LIMIT``."""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    scripted: bool = False


def _check_service(service: str) -> None:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; services are {', '.join(SERVICES)}")


@dataclass(frozen=True, kw_only=True)
class FaultPlan:
    """Which faults every service injects, reproducibly from ``seed``."""

    seed: int = 0
    sendgrid: ServiceFaults = field(default_factory=ServiceFaults)
    sentiment: ServiceFaults = field(default_factory=ServiceFaults)
    crm: ServiceFaults = field(default_factory=ServiceFaults)
    script: Script = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen: dict[tuple[str, str], tuple[ScriptedOutcome, ...]] = {}
        for (service, subject), outcomes in self.script.items():
            _check_service(service)
            for outcome in outcomes:
                if not isinstance(outcome, Succeed | RateLimit | TimeoutBefore | TimeoutAfter):
                    raise TypeError(
                        f"script for ({service!r}, {subject!r}) holds {outcome!r}; use "
                        "Succeed(), RateLimit(retry_after), TimeoutBefore() or TimeoutAfter()"
                    )
            frozen[(service, subject)] = tuple(outcomes)
        # A plan is a value: copy the script so that nobody can change it behind a running test.
        object.__setattr__(self, "script", MappingProxyType(frozen))

    @classmethod
    def none(cls) -> FaultPlan:
        """Every call succeeds at once."""
        return cls()

    @classmethod
    def chaos(
        cls,
        seed: int,
        *,
        rate: float = 0.1,
        latency: Latency | None = None,
        retry_after: tuple[float, float] = DEFAULT_RETRY_AFTER,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> FaultPlan:
        """Every fault kind on every service: 429s at ``rate``, each timeout kind at ``rate / 2``,
        with skewed latency (median 1 ms, p99 10 ms unless given)."""
        if not 0.0 <= rate <= 0.5:
            raise ValueError(
                f"chaos rate must be in [0, 0.5] (its faults add up to 2 x rate), got {rate}"
            )
        faults = ServiceFaults(
            rate_limit=rate,
            retry_after=retry_after,
            timeout_before=rate / 2,
            timeout_after=rate / 2,
            timeout_seconds=timeout_seconds,
            latency=latency if latency is not None else Latency(median=0.001, p99=0.01),
        )
        return cls(seed=seed, sendgrid=faults, sentiment=faults, crm=faults)

    def faults_for(self, service: str) -> ServiceFaults:
        _check_service(service)
        faults: ServiceFaults = getattr(self, service)
        return faults

    def decide(self, service: str, subject: str, n: int) -> Decision:
        """The fate of the ``n``-th (1-based) call to ``service`` for ``subject``.

        Pure: the same arguments give the same decision, whatever else has been decided before.
        """
        if n < 1:
            raise ValueError(f"n counts calls from 1, got {n}")
        faults = self.faults_for(service)
        rng = stable_random(self.seed, service, subject, n)
        # Draw in a fixed order whatever the outcome, so that changing one rate does not reshuffle
        # the latency or retry_after of unrelated calls.
        roll = rng.random()
        drawn_retry_after = rng.uniform(*faults.retry_after)
        latency = faults.latency.sample(rng)

        scripted = self.script.get((service, subject), ())
        if n <= len(scripted):
            outcome = scripted[n - 1]
            retry_after = outcome.retry_after if isinstance(outcome, RateLimit) else 0.0
            if isinstance(outcome, Succeed | RateLimit) and outcome.latency is not None:
                latency = outcome.latency
            return Decision(
                outcome=outcome.fault,
                latency=latency,
                retry_after=retry_after,
                timeout_seconds=faults.timeout_seconds,
                scripted=True,
            )

        fault = Fault.NONE
        threshold = 0.0
        for candidate, rate in (
            (Fault.RATE_LIMIT, faults.rate_limit),
            (Fault.TIMEOUT_BEFORE, faults.timeout_before),
            (Fault.TIMEOUT_AFTER, faults.timeout_after),
        ):
            threshold += rate
            if roll < threshold:
                fault = candidate
                break
        return Decision(
            outcome=fault,
            latency=latency,
            retry_after=drawn_retry_after if fault is Fault.RATE_LIMIT else 0.0,
            timeout_seconds=faults.timeout_seconds,
        )
