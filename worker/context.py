"""The worker process's ``Context`` (database + storage), built once on first use."""
from __future__ import annotations

import threading

from clearcut.context import Context

_lock = threading.Lock()
_context: Context | None = None


def context() -> Context:
    global _context
    with _lock:
        if _context is None:
            _context = Context.from_env()
        return _context
