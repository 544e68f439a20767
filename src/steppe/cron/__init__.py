"""Cron expressions for periodic jobs: parsing, and the next launch after a given time.

Pure and clock-free: callers pass in the time to start from, so the leader's periodic
dispatcher, job-file validation and ``job status`` all compute the same launch times.
"""

from steppe.cron._spec import (
    CronError,
    CronSpec,
    next_launch,
    next_launch_any,
    parse_cron,
    zone,
)

__all__ = ["CronError", "CronSpec", "next_launch", "next_launch_any", "parse_cron", "zone"]
