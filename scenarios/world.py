"""A drill's world beyond production's code: the campaign's customers and the fake APIs, as the
incident declares them.

Most incidents need nothing out of the ordinary: a campaign of ``campaign_emails`` (a few of them
undeliverable) and the harness's fake APIs with the deployment's latency and faults. An incident
with a ``Poison`` customer gets that customer in its campaign, and APIs under which that
customer's reply kills the worker process that analyzes it: ``get_reply`` answers, and the worker
dies as it hands the reply to the sentiment API (``WorkerCrashed``, which no ``except Exception``
can swallow), every time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from harness.exceptions import WorkerCrashed
from harness.world.campaigns import campaign_emails
from harness.world.faults import Decision, FaultPlan
from harness.world.replies import reply_for
from harness.world.services import Services

from .incident import Incident, Load, Poison

__all__ = ["PoisonedPlan", "campaign", "services"]


def campaign(incident: Incident, load: Load) -> list[str]:
    """The customers a load queues: ``load.jobs`` addresses, one in a thousand undeliverable,
    and the incident's poison customer (in place of the one at its position)."""
    emails = campaign_emails(load.jobs, invalid=min(load.jobs, max(1, load.jobs // 1000)))
    poison = incident.poison
    if poison is not None:
        emails[min(poison.position, len(emails) - 1)] = poison.address
    return emails


def services(incident: Incident, plan: FaultPlan) -> Services:
    """The fake APIs of one run of ``incident``, with the fault plan ``plan``."""
    if incident.poison is None:
        return Services(plan)
    return Services(PoisonedPlan.around(plan, incident.poison))


@dataclass(frozen=True, kw_only=True)
class PoisonedPlan(FaultPlan):
    """A fault plan under which the poison customer's reply kills the worker that hands it to
    the sentiment API: production's client library parses the text first, and its native parser
    dies on this one. The call is never made (nothing reaches the ledger), and no other text,
    nor the customer's other calls, is touched."""

    poison: Poison

    @classmethod
    def around(cls, plan: FaultPlan, poison: Poison) -> PoisonedPlan:
        """``plan``, with ``poison`` among the customers."""
        kept = {f.name: getattr(plan, f.name) for f in fields(FaultPlan) if f.init}
        return cls(**{**kept, "script": dict(plan.script)}, poison=poison)

    def decide(self, service: str, subject: str, n: int) -> Decision:
        # The reply is the customer's own (signed with the address): compare whole texts, so
        # that no other reply can be taken for it.
        if service == "sentiment" and subject == reply_for(self.seed, self.poison.address):
            raise WorkerCrashed(self.poison.last_words)  # all its log says
        return super().decide(service, subject, n)
