"""The grader's local time zone: never UTC, so that a solution comparing ``run_after`` with naive
local time (``datetime.now()``) is wrong every run, not only on machines set to another zone."""

from __future__ import annotations

import os
import time

__all__ = ["GRADING_TZ", "use_grading_time_zone"]

#: UTC+05:30 as a POSIX TZ string (no tz database needed): a half-hour offset, so that neither a
#: whole-hour slip nor a sign error can happen to come out right.
GRADING_TZ = "<+0530>-05:30"


def use_grading_time_zone() -> None:
    """Make this process (and the processes it starts) live in ``GRADING_TZ``."""
    os.environ["TZ"] = GRADING_TZ
    if hasattr(time, "tzset"):
        time.tzset()
