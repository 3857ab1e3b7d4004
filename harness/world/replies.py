"""What the fake APIs know about the world: which addresses are deliverable, what customers
reply, and what a reply's sentiment is. Pure functions, deterministic per input and seed."""

from __future__ import annotations

import re
from collections import Counter

from .faults import stable_random

__all__ = [
    "REPLY_TEMPLATES",
    "SENTIMENTS",
    "classify_sentiment",
    "invalid_email_reason",
    "reply_for",
]

SENTIMENTS: tuple[str, ...] = ("positive", "negative", "neutral")

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# local@domain.tld: dot-separated atoms (no leading, trailing or doubled dots), hostname labels,
# an alphabetic TLD. Stricter than RFC 5322 on purpose, like SendGrid: quoted local parts and IP
# literals are legal but never what a customer list should contain.
_EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")


def invalid_email_reason(address: object) -> str | None:
    """Why SendGrid would reject ``address`` (a phrase), or None when it is deliverable."""
    if not isinstance(address, str):
        return f"is a {type(address).__name__}, not an address"
    if len(address) > 254 or len(address.partition("@")[0]) > 64:
        return "is longer than an address may be"
    if not _EMAIL.fullmatch(address):
        return "is not of the form local@domain.tld (no spaces, no doubled or edge dots)"
    domain = address.rpartition("@")[2].lower()
    if domain == "invalid" or domain.endswith(".invalid"):
        # RFC 2606 reserves .invalid so that it can never resolve: the sample data uses it for
        # addresses that must fail.
        return (
            f"is under the reserved top-level domain .invalid (RFC 2606): "
            f"{domain} can never receive mail"
        )
    return None


REPLY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "positive": (
        "I love the new plan and I'm interested in upgrading. Can we talk this week?",
        "This is great, exactly what we needed. Happy to move forward, please send pricing.",
        "Sounds excellent, count me in. Our team is excited to try it.",
        "Yes please! Wonderful timing, we were looking for something like this.",
    ),
    "negative": (
        "Please unsubscribe me. I'm not interested and these emails are annoying.",
        "Honestly disappointed. The last release broke our reports and support was terrible.",
        "Stop emailing me. I want to cancel my account.",
        "Third time asking: remove me from this list. Frustrated, and considering a refund.",
    ),
    "neutral": (
        "Received. I will forward this to my manager and get back to you next quarter.",
        "Not sure yet. Could you send more details about the timeline?",
        "I'm out of the office until Monday and will review your message when I'm back.",
        "Maybe later. We are reviewing options and will decide next month.",
    ),
}
"""Replies by intended sentiment; ``classify_sentiment`` gives each its intended answer."""


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Just enough vocabulary for customer replies; the templates above use it, and so can tests.
_POSITIVE = _words(
    "love great interested excellent happy perfect yes upgrade upgrading amazing wonderful "
    "excited awesome good glad pleased helpful"
)
_NEGATIVE = _words(
    "unsubscribe annoying annoyed disappointed terrible stop cancel remove frustrated refund "
    "angry worst bad spam broke broken useless hate awful complaint complaints poor"
)
_NEUTRAL = _words(
    "received forward details maybe later sure timeline office review reviewing information "
    "question questions undecided unsure noted options"
)
_LEXICON: dict[str, str] = {
    **dict.fromkeys(_POSITIVE, "positive"),
    **dict.fromkeys(_NEGATIVE, "negative"),
    **dict.fromkeys(_NEUTRAL, "neutral"),
}
_NEGATORS = frozenset(_words("not no never don't dont isn't wasn't aren't without hardly"))
_SIGNATURE = "\n-- \n"


def classify_sentiment(text: str) -> str:
    """Lexicon vote: positive and negative words (a negator within two words before flips them);
    neutral words or a tie give neutral; text with no known word falls back to a stable hash."""
    body = text.split(_SIGNATURE, 1)[0]  # signatures carry names, not opinions
    words = re.findall(r"[a-z']+", body.lower())
    votes: Counter[str] = Counter()
    for i, word in enumerate(words):
        sentiment = _LEXICON.get(word)
        if sentiment is None:
            continue
        if sentiment != "neutral" and _NEGATORS.intersection(words[max(0, i - 2) : i]):
            sentiment = "negative" if sentiment == "positive" else "positive"
        votes[sentiment] += 1
    if votes["positive"] != votes["negative"]:
        return "positive" if votes["positive"] > votes["negative"] else "negative"
    if votes:
        return "neutral"
    return stable_random("sentiment", text).choice(SENTIMENTS)


def reply_for(seed: int, recipient: str) -> str:
    """The reply ``recipient`` sends under ``seed``: a template, signed with the address so that
    every customer's reply text is their own (faults and violations are keyed by it)."""
    rng = stable_random(seed, "reply", recipient)
    template = rng.choice(REPLY_TEMPLATES[rng.choice(SENTIMENTS)])
    name = " ".join(part.capitalize() for part in re.split(r"[._+-]+", recipient.split("@")[0]))
    return f"{template}{_SIGNATURE}{name}\n{recipient}"
