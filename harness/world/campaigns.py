"""A campaign's customers: addresses for the runs of the stress command, the drills and the
benchmarks, a few of them undeliverable."""

from __future__ import annotations

__all__ = ["campaign_emails"]


def campaign_emails(count: int, *, invalid: int = 2) -> list[str]:
    """``count`` customer addresses, ``invalid`` of them undeliverable (``@bounce.invalid``),
    spread through the list."""
    if not 0 <= invalid <= count:
        raise ValueError(f"invalid must be between 0 and count ({count}), got {invalid}")
    bad = {(k + 1) * count // (invalid + 1) for k in range(invalid)}
    return [
        f"x{i}@bounce.invalid" if i in bad else f"customer.{i}@example.com" for i in range(count)
    ]
