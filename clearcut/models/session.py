"""ONNX Runtime segmentation sessions: one per model and process, reused for every image.

A session takes an RGB proxy already resized so that its longer side equals the model's input size,
pads it to the square the network expects, normalises it the way the model was trained, and returns
the foreground probability for the unpadded area.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from clearcut import config
from clearcut.models.registry import NORMALISATIONS, ModelSpec, spec
from clearcut.models.store import ModelStore


def default_threads() -> int:
    configured = config.get("CLEARCUT_ORT_THREADS")
    if configured > 0:
        return configured
    concurrency = config.get("CLEARCUT_WORKER_CONCURRENCY")
    return max(1, (os.cpu_count() or 1) // concurrency)


def select_providers() -> list[str]:
    """ONNX Runtime execution providers for new sessions, best first (CPU always last)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    preferred = [p for p in ("CUDAExecutionProvider",) if p in available]
    return [*preferred, "CPUExecutionProvider"]


class SegmentationSession:
    def __init__(self, model: ModelSpec, path, *, threads: int | None = None, providers=None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.model = model
        self._session = ort.InferenceSession(str(path), options,
                                             providers=providers or select_providers())
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        norm = NORMALISATIONS[model.normalisation]
        self._mean = np.asarray(norm["mean"], np.float32)
        self._std = np.asarray(norm["std"], np.float32)
        self._scale_to_max = norm["scale"] == "max"

    @property
    def size(self) -> int:
        return self.model.input_size

    @property
    def providers(self) -> list[str]:
        return self._session.get_providers()

    def predict(self, proxy: np.ndarray) -> np.ndarray:
        """Foreground probability (float32, 0..1) for an RGB uint8 proxy of longer side ``size``.

        The proxy is padded by edge replication rather than stretched, so the subject keeps its
        aspect ratio and no artificial border is introduced.
        """
        h, w = proxy.shape[:2]
        if max(h, w) != self.size:
            raise ValueError(f"proxy {w}x{h} does not have longer side {self.size}")
        x = proxy.astype(np.float32)
        x /= max(float(x.max()), 1.0) if self._scale_to_max else 255.0
        x -= self._mean
        x /= self._std
        pad = ((0, self.size - h), (0, self.size - w), (0, 0))
        x = np.pad(x, pad, mode="edge")
        batch = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        out = self._session.run([self._output], {self._input: batch})[0][0, 0, :h, :w]
        return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


_sessions: dict[tuple[str, str], SegmentationSession] = {}
_lock = threading.Lock()


def loaded() -> list[dict]:
    """Sessions this process holds: model name and active providers (for health and metrics)."""
    with _lock:
        return [{"model": s.model.name, "providers": s.providers} for s in _sessions.values()]


def get_session(name: str, store: ModelStore | None = None) -> SegmentationSession:
    """The process-wide session for a model (created on first use, then reused)."""
    store = store or ModelStore()
    key = (name, str(store.directory))
    with _lock:
        if key not in _sessions:
            _sessions[key] = SegmentationSession(spec(name), store.path(name))
        return _sessions[key]
