"""What a worker reports about itself (ping task, ``clearcut_info`` control command, health)."""
from __future__ import annotations

import os
import socket

from clearcut import config


def models() -> dict:
    """Cached model files, the default model and the execution provider sessions are created with."""
    try:
        from clearcut.models.store import ModelStore

        from clearcut.models.session import select_providers

        rows = ModelStore().describe()
        return {"models": [r["name"] for r in rows if r["cached"]],
                "default_model": config.get("CLEARCUT_DEFAULT_MODEL"), "provider": select_providers()[0]}
    except Exception as exc:  # noqa: BLE001 - a broken model config must not break the ping
        return {"models": [], "models_error": f"{type(exc).__name__}: {exc}", "provider": None}


def worker_info(queues: list[str] | None = None) -> dict:
    return {"hostname": socket.gethostname(), "pid": os.getpid(), "queues": queues or [], **models()}
