"""Batched inference: a dynamic-batch copy of a model graph and an in-process micro-batcher.

The published models have a fixed batch axis of 1. ``dynamic_batch`` renames it to a symbolic
``batch`` on every graph input and output and drops the intermediate shapes inferred for batch 1;
the graphs have no Reshape pinning the batch, so nothing else needs to change (tests/test_batching.py
checks that a batch of N equals N single runs).

The copy is derived in memory when a batching session is created, never written next to the model:
the model directory is read-only in the worker images (root-owned, ``readOnlyRootFilesystem`` in
Kubernetes), and a file derived from the verified source bytes at load time can never be stale, so it
needs no checksum sidecar. Measured here (2 shared cores): 0.04 s for u2netp, 0.4 s for isnet-general,
1.7 s for u2net, once per worker process.

``MicroBatcher``: threads that call ``submit`` (one per Celery task on a ``--pool threads`` worker)
hand in one input each; a single runner thread takes the first waiting input, collects more until it
has ``max_size`` or ``max_wait_s`` has passed since it took the first, runs them as one batch and
hands each caller its own slice. An exception from the batch is raised in every caller of that batch;
the runner goes on with the next one.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger("clearcut.models")
BATCH_AXIS = "batch"


def dynamic_batch(source):
    """The ONNX model at ``source`` (a path, or an ``onnx.ModelProto``, changed in place) with a
    symbolic batch axis (an output declared without a shape gets none)."""
    import onnx

    model = onnx.load(str(source)) if isinstance(source, (str, Path)) else source
    for value in list(model.graph.input) + list(model.graph.output):
        if not value.type.tensor_type.shape.dim:
            continue
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = BATCH_AXIS
    del model.graph.value_info[:]   # intermediate shapes were inferred for batch 1
    # No onnx.checker here: the published isnet-general already fails its topological-order check
    # (ONNX Runtime sorts nodes itself); running the graph is what verifies the re-export.
    return model


@dataclass(eq=False)
class _Request:
    item: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


# Called with (model name, batch size) after every batch: the worker registers its Prometheus histogram
# here, so this package stays free of worker code.
OBSERVERS: list[Callable[[str, int], None]] = []


class MicroBatcher:
    """Runs ``run(stacked inputs) -> stacked outputs`` on batches of up to ``max_size`` inputs.

    ``sizes`` counts the batches run by size (for tests and the debug log). The runner thread starts on
    the first ``submit``, so a batcher created before a fork has no thread to lose.
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_size: int, max_wait_s: float,
                 name: str = "model"):
        if max_size < 2:
            raise ValueError("a MicroBatcher needs max_size >= 2 (batch size 1 runs directly)")
        self._run = run
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.name = name
        self.sizes: Counter[int] = Counter()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, item: np.ndarray) -> np.ndarray:
        """Run ``item`` (one input, without the batch axis) in the next batch; its output, or raise."""
        request = _Request(item)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"batcher-{self.name}", daemon=True)
                self._thread.start()
            self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def close(self) -> None:
        """Stop the runner thread once the batches already submitted have run."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` plus whatever arrives within the wait, up to max_size; (batch, closing)."""
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_size:
            try:
                request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if request is None:
                return batch, True
            batch.append(request)
        return batch, False

    def _loop(self) -> None:
        closing = False
        while not closing:
            first = self._queue.get()
            if first is None:
                return
            batch, closing = self._collect(first)
            try:
                outputs = self._run(np.stack([r.item for r in batch]))
                for request, output in zip(batch, outputs):
                    request.result = output
            except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets it
                for request in batch:
                    request.error = exc
            finally:
                self.sizes[len(batch)] += 1
                log.debug("inference batch", extra={"model": self.name, "batch_size": len(batch)})
                for observe in OBSERVERS:
                    observe(self.name, len(batch))
                for request in batch:
                    request.done.set()
