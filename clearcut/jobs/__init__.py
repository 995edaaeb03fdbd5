"""Jobs: one image through the service, recorded in SQL, run by a worker, answered from storage.

The modules, from the bottom up: ``results`` (what a job stores and reuses), ``events`` (webhook
events and batch completion when a job ends), ``submission`` (recording and reading jobs, for the
API), ``processing`` (running them, for the worker), ``replays``, ``batches``, ``idempotency``,
``sweeper`` (jobs whose worker was lost) and ``retention`` (expiring stored images).

The names below are the job API that ``app`` and ``worker`` use as ``jobs.submit(...)``.
"""
from clearcut.jobs.events import check_batch_complete
from clearcut.jobs.processing import claim, finish_failed, hold_for_retry, process
from clearcut.jobs.replays import Replay, replay
from clearcut.jobs.results import (ACTIVE, EXTENSIONS, STATUSES, TERMINAL, options_from_row, output_key,
                                   result_key, store_original)
from clearcut.jobs.submission import (Submission, accept, cancel, decode_cursor, encode_cursor, get, list_jobs, submit,
                                      submit_pending)

__all__ = ["ACTIVE", "EXTENSIONS", "STATUSES", "TERMINAL", "Replay", "Submission", "accept", "cancel", "check_batch_complete",
           "claim", "decode_cursor", "encode_cursor", "finish_failed", "get", "hold_for_retry", "list_jobs",
           "options_from_row", "output_key", "process", "replay", "result_key", "store_original", "submit",
           "submit_pending"]
