"""Wake a waiting synchronous request the moment its job ends, instead of letting it poll the database.

After a job's terminal state is committed, the worker pushes one item onto a short-lived per-job Redis
list; ``POST /v2`` (and the compat routes) block on that list with BLPOP between reads of the job row.
The SQL row stays the source of truth: the list is only a wake-up. A lost or late wake-up costs at
most one ``WAIT_SLICE_S`` (the waiter re-reads the row after every slice), an item nobody waits for
(async jobs) expires after ``KEEP_S``, and a duplicate from an at-least-once redelivery makes a waiter
re-read a row that is already terminal. Figures: docs/benchmarks.md, "API latency".
"""
from __future__ import annotations

from typing import Mapping

from clearcut import config

KEEP_S = 60         # an announcement nobody collected is dropped after this
WAIT_SLICE_S = 0.5  # longest a waiter blocks before it reads the job row again
_MIN_BLOCK_S = 0.01  # BLPOP's timeout 0 would mean "forever"


def key(job_id: str, environ: Mapping[str, str] | None = None) -> str:
    return f"{config.get('CLEARCUT_BROKER_PREFIX', environ)}clearcut:job-done:{job_id}"


def announce(client, job_id: str, environ: Mapping[str, str] | None = None) -> None:
    """Tell a waiter that ``job_id`` reached a terminal state (call after that state is committed)."""
    name = key(job_id, environ)
    client.pipeline(transaction=False).rpush(name, "1").expire(name, KEEP_S).execute()


def wait(client, job_id: str, timeout: float, environ: Mapping[str, str] | None = None) -> bool:
    """Block up to ``timeout`` seconds (at most WAIT_SLICE_S) for ``job_id``'s announcement."""
    block = max(_MIN_BLOCK_S, min(timeout, WAIT_SLICE_S))
    return client.blpop([key(job_id, environ)], timeout=block) is not None
