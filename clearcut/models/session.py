"""ONNX Runtime segmentation sessions: one per model and process, reused for every image.

A session takes an RGB image whose longer side equals the model's input size (the pipeline stretches
it to the full square), pads anything short of the square, and normalises it the way the model was
trained. It runs the graph cut before its sigmoid head (``logits.logit_head``, which also drops the
side outputs nobody reads): ``predict_logits`` returns the logits on the network's own output grid,
``predict`` the foreground probability for the unpadded area (the published graph's output).
"""
from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from clearcut import config
from clearcut.errors import ModelError
from clearcut.models import logits
from clearcut.models.registry import INT8_SUFFIX, NORMALISATIONS, ModelSpec, int8_name, spec
from clearcut.models.store import ModelStore

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
# What each CLEARCUT_EXECUTION_PROVIDER value needs, best first (CPU is always appended last so
# that ONNX Runtime can place the few operators a GPU provider does not implement).
REQUIRED = {"cpu": (), "cuda": (CUDA,), "tensorrt": (TENSORRT, CUDA)}


class ProviderUnavailable(ModelError):
    """A GPU execution provider was requested but is not active: refuse rather than run on the CPU."""
    code = "execution_provider_unavailable"
    status = 503


def available_cpus() -> int:
    """Cores this process may use: the CPU affinity mask, capped by a cgroup v2 quota (a container's
    CPU limit), rounded up. ``os.cpu_count()`` alone reports the host's cores inside a container."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def default_threads() -> int:
    """Intra-op threads per session: CLEARCUT_ORT_THREADS, else cores / worker processes (at least 1),
    so N worker processes on a node share its cores instead of each spawning one thread per core. A
    batching worker (CLEARCUT_INFERENCE_BATCH_SIZE > 1) is one process with a threads pool whose tasks
    share one session per model, so it counts as one process."""
    configured = config.get("CLEARCUT_ORT_THREADS")
    if configured > 0:
        return configured
    batching = config.get("CLEARCUT_INFERENCE_BATCH_SIZE") > 1
    processes = 1 if batching else config.get("CLEARCUT_WORKER_CONCURRENCY")
    return max(1, available_cpus() // processes)


def _unavailable(requested: str, missing: str, available: list[str], version: str) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"CLEARCUT_EXECUTION_PROVIDER={requested} needs ONNX Runtime's {missing}, but this ONNX Runtime "
        f"({version}) offers only {', '.join(available)}. Run the worker on an NVIDIA GPU node with the "
        "onnxruntime-gpu package and its CUDA 12 / cuDNN 9 libraries (TensorRT 10 for `tensorrt`; the "
        "worker-gpu image has them), or set CLEARCUT_EXECUTION_PROVIDER=cpu (or auto) to run on the CPU. "
        "Refusing to fall back to the CPU silently.",
        requested=requested, missing=missing, available=available)


def select_providers(requested: str | None = None, available: list[str] | None = None) -> list[str]:
    """ONNX Runtime execution providers for new sessions, best first (CPU always last).

    ``requested`` (default CLEARCUT_EXECUTION_PROVIDER): ``auto`` takes CUDA when ONNX Runtime offers it,
    ``cpu`` forces the CPU, ``cuda``/``tensorrt`` raise ProviderUnavailable when the provider is missing.
    """
    import onnxruntime as ort

    requested = requested or config.get("CLEARCUT_EXECUTION_PROVIDER")
    available = list(available if available is not None else ort.get_available_providers())
    if requested == "auto":
        return [*([CUDA] if CUDA in available else []), CPU]
    needed = REQUIRED[requested]
    for provider in needed:
        if provider not in available:
            raise _unavailable(requested, provider, available, ort.__version__)
    return [*needed, CPU]


def check_active(requested: str, active: list[str]) -> None:
    """Raise when a session did not get the GPU provider it asked for. ONNX Runtime itself only logs a
    warning and runs on the CPU when CUDA libraries fail to load; that silent fallback is refused."""
    needed = REQUIRED.get(requested, ())
    if needed and (not active or active[0] != needed[0]):
        raise ProviderUnavailable(
            f"CLEARCUT_EXECUTION_PROVIDER={requested}: ONNX Runtime offers {needed[0]} but the session came up "
            f"on {', '.join(active) or 'nothing'} (the provider failed to initialise: check the GPU driver, "
            "CUDA_VISIBLE_DEVICES and the CUDA/cuDNN/TensorRT libraries; ONNX Runtime's warning above names the "
            "missing library). Set CLEARCUT_EXECUTION_PROVIDER=cpu to run on the CPU on purpose.",
            requested=requested, active=active)


def provider_options(providers: list[str], profile: dict[str, str] | None = None) -> list:
    """Providers with their options: TensorRT caches built engines (and runs fp16) under the data dir.

    ``profile`` (TensorRT's ``trt_profile_{min,opt,max}_shapes``) gives a dynamic-batch graph one engine
    for every batch size up to the maximum, instead of an engine rebuild for each new size."""
    out = []
    for name in providers:
        if name == TENSORRT:
            cache = Path(config.get("CLEARCUT_DATA_DIR")).resolve() / "trt-cache"
            out.append((name, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                               "trt_fp16_enable": True, **(profile or {})}))
        else:
            out.append(name)
    return out


def make_square(rgb: np.ndarray, size: int, picture: Image.Image | None = None) -> np.ndarray:
    """The network input: the image stretched to ``size`` x ``size`` (antialiased bilinear). ``picture``:
    the same pixels as a Pillow RGB image, when the caller has one (saves copying ``rgb`` into it)."""
    if rgb.shape[:2] == (size, size):
        return rgb
    if picture is None or picture.mode != "RGB" or picture.size != (rgb.shape[1], rgb.shape[0]):
        picture = Image.fromarray(rgb)
    return np.asarray(picture.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0))


def preprocess(model: ModelSpec, square: np.ndarray) -> np.ndarray:
    """An RGB uint8 square (the network's input size) -> the normalised NCHW float32 batch of one."""
    norm = NORMALISATIONS[model.normalisation]
    peak = max(float(square.max()), 1.0) if norm["scale"] == "max" else 255.0
    mean, std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
    # Plane by plane into the NCHW buffer: the same float32 operations in the same order as on the
    # interleaved array (bit-identical input), without its transposed copy (25 -> 5 ms at 1024 px).
    x = np.empty((1, 3, *square.shape[:2]), np.float32)
    for c in range(3):
        plane = x[0, c]
        plane[...] = square[:, :, c]
        plane /= peak
        plane -= mean[c]
        plane /= std[c]
    return x


class SegmentationSession:
    """One ONNX Runtime session for one model.

    ``batch_size`` (default CLEARCUT_INFERENCE_BATCH_SIZE) 1 runs each ``predict`` directly on the
    published graph. Above 1 the session runs a dynamic-batch copy of the graph (``batching.dynamic_batch``)
    and ``predict`` goes through a ``MicroBatcher``: concurrent callers (the threads of a ``--pool
    threads`` worker) are run together, up to ``batch_size`` inputs or ``max_wait_ms`` (default
    CLEARCUT_INFERENCE_BATCH_WAIT_MS) after the first one.

    On a GPU provider inputs are bound on the device with I/O binding (``io_device``): one host-to-device
    copy of the batch, only the probability output copied back, none of the side outputs.
    """

    def __init__(self, model: ModelSpec, path, *, threads: int | None = None, providers=None,
                 requested: str | None = None, batch_size: int | None = None, max_wait_ms: float | None = None):
        import onnxruntime as ort

        from clearcut.models import batching

        requested = requested or config.get("CLEARCUT_EXECUTION_PROVIDER")
        providers = providers or select_providers(requested)
        batch_size = batch_size or config.get("CLEARCUT_INFERENCE_BATCH_SIZE")

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Memory patterns pre-plan one big block per input shape; without them the arena still
        # reuses buffers. Measured here (ISNet + U2-Net, 2 threads): same speed (2.51 s vs 2.52 s),
        # peak RSS 1.9 GiB instead of 3.0 GiB. (Disabling the arena too saves 0.3 GiB more but is
        # 26% slower.)
        options.enable_mem_pattern = False
        self.model = model
        import onnx

        graph, self.logit_output = logits.logit_head(onnx.load(str(path)))
        profile = None
        if batch_size > 1:
            graph = batching.dynamic_batch(graph)
            shape = f"3x{model.input_size}x{model.input_size}"
            name = graph.graph.input[0].name
            profile = {"trt_profile_min_shapes": f"{name}:1x{shape}",
                       "trt_profile_opt_shapes": f"{name}:{batch_size}x{shape}",
                       "trt_profile_max_shapes": f"{name}:{batch_size}x{shape}"}
        source = graph.SerializeToString()
        del graph
        self._session = ort.InferenceSession(source, options, providers=provider_options(providers, profile))
        check_active(requested, self._session.get_providers())
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self.io_device = "cuda" if self._session.get_providers()[0] in (CUDA, TENSORRT) else None
        self.batcher = None
        if batch_size > 1:
            wait = config.get("CLEARCUT_INFERENCE_BATCH_WAIT_MS") if max_wait_ms is None else max_wait_ms
            self.batcher = batching.MicroBatcher(self.run, batch_size, wait / 1000.0, name=model.name)

    @property
    def size(self) -> int:
        return self.model.input_size

    @property
    def providers(self) -> list[str]:
        return self._session.get_providers()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The graph's output (N, 1, n, n) for a normalised NCHW float32 batch: the logits on the
        network's own grid (``logit_output``), or the probability for a graph without a sigmoid head."""
        if self.io_device is None:
            return self._session.run([self._output], {self._input: batch})[0]
        import onnxruntime as ort

        binding = self._session.io_binding()
        binding.bind_ortvalue_input(self._input, ort.OrtValue.ortvalue_from_numpy(batch, self.io_device, 0))
        binding.bind_output(self._output, "cpu")
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def predict_logits(self, square: np.ndarray) -> np.ndarray:
        """The network's logits (float32) on its own output grid for an RGB uint8 square of the input size
        (``make_square``): 512 x 512 for ISNet's 1024 px input, 320 x 320 for U2-Net's; each logit pixel
        covers the same share of the square (``logits.to_size`` brings them to any size)."""
        if square.shape[:2] != (self.size, self.size):
            raise ValueError(f"input {square.shape[1]}x{square.shape[0]} is not the {self.size} px square")
        x = preprocess(self.model, square)
        out = (self.run(x) if self.batcher is None else self.batcher.submit(x[0])[None])[0, 0]
        out = np.asarray(out, np.float32)
        return out if self.logit_output else logits.from_probability(out)

    def predict(self, proxy: np.ndarray) -> np.ndarray:
        """Foreground probability (float32, 0..1) for an RGB uint8 image of longer side ``size``: the logits
        brought to the input size, then the sigmoid: the published graph's own output, within that graph's
        rounding (ISNet takes its sigmoid in fp16: 3e-4).

        A non-square input is padded by edge replication to the square and the padding cut off again.
        """
        h, w = proxy.shape[:2]
        if max(h, w) != self.size:
            raise ValueError(f"proxy {w}x{h} does not have longer side {self.size}")
        pad = ((0, self.size - h), (0, self.size - w), (0, 0))
        out = logits.to_size(self.predict_logits(np.pad(proxy, pad, mode="edge")), (self.size, self.size))
        return np.ascontiguousarray(out[:h, :w])


_sessions: dict[tuple[str, str], SegmentationSession] = {}
_lock = threading.Lock()


def loaded() -> list[dict]:
    """Sessions this process holds: model name and active providers (for health and metrics)."""
    with _lock:
        return [{"model": s.model.name, "providers": s.providers} for s in _sessions.values()]


def resolve_precision(name: str, store: ModelStore, *, precision: str | None = None,
                      provider: str | None = None) -> str:
    """The model file a request for ``name`` runs: ``NAME-int8`` or ``NAME``.

    CLEARCUT_MODEL_PRECISION ``auto``: the int8 variant on the CPU when it is built and its recorded
    quality check passed (GPU providers keep float: int8 QDQ gains nothing there without TensorRT
    calibration); ``fp32``: always the float file; ``int8``: the int8 variant, or an error saying how to
    build it. A name that already ends in ``-int8`` is taken as asked."""
    if name.endswith(INT8_SUFFIX):
        return name
    precision = precision or config.get("CLEARCUT_MODEL_PRECISION")
    if precision == "fp32" or spec(name).source.startswith("quantize:"):
        return name
    if precision == "int8":
        if not store.has_int8(name, checked=False):
            raise ModelError(f"CLEARCUT_MODEL_PRECISION=int8 but {int8_name(name)!r} is not built in "
                             f"{store.directory}; run `clearcut models quantize {name}` (or set it to auto)",
                             code="model_unavailable")
        return int8_name(name)
    if provider is None:
        try:
            provider = select_providers()[0]
        except ProviderUnavailable:
            provider = CPU
    return int8_name(name) if provider == CPU and store.has_int8(name) else name


def get_session(name: str, store: ModelStore | None = None) -> SegmentationSession:
    """The process-wide session for a model (created on first use, then reused); the precision is
    chosen by ``resolve_precision``, so ``session.model.name`` says which file runs."""
    store = store or ModelStore()
    name = resolve_precision(name, store)
    key = (name, str(store.directory))
    with _lock:
        if key not in _sessions:
            _sessions[key] = SegmentationSession(spec(name), store.path(name))
        return _sessions[key]


def _probe(requested: str) -> tuple[str, object]:
    """In a fresh process: open the smallest cached model with ``requested``; (ok|error, providers|message)."""
    try:
        store = ModelStore()
        cached = [r for r in store.describe() if r["cached"]]
        if not cached:
            return "error", f"no cached model in {store.directory} to test the provider with; run `clearcut models fetch`"
        smallest = min(cached, key=lambda r: r["size_bytes"] or 0)["name"]
        return "ok", SegmentationSession(spec(smallest), store.path(smallest), threads=1, requested=requested).providers
    except Exception as exc:  # noqa: BLE001 - reported to the parent as text
        return "error", getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"


def probe_provider(requested: str, timeout: float = 300.0) -> list[str]:
    """Open a real session with ``requested`` in a spawned process and return its active providers.

    A spawned child, not this process: CUDA must not be initialised in a Celery parent that later forks
    its pool processes (a CUDA context does not survive fork)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        status, value = pool.submit(_probe, requested).result(timeout=timeout)
    if status != "ok":
        raise ProviderUnavailable(str(value), requested=requested)
    return list(value)


def startup_check(requested: str | None = None) -> str:
    """The provider a worker will run on; raises ProviderUnavailable when a requested GPU provider is
    missing (cheap check) or does not initialise (a real session in a spawned process)."""
    requested = requested or config.get("CLEARCUT_EXECUTION_PROVIDER")
    providers = select_providers(requested)
    if REQUIRED.get(requested):
        providers = probe_provider(requested)
    return providers[0]


def active_provider() -> str | None:
    """The provider this process's sessions run on (the configured choice if none is loaded yet)."""
    for session in loaded():
        return session["providers"][0]
    try:
        return select_providers()[0]
    except ProviderUnavailable:
        return None
