"""Calibrated static int8 variants (QDQ, per-channel weights) built with ONNX Runtime's quantization tools.

``build(name)`` writes ``NAME-int8.onnx`` into the model store together with ``NAME-int8.json``, the
recipe: the float model's sha256, calibration method and images (with their sha256), the nodes kept in
float, the ONNX Runtime version, the int8 file's own sha256 and a quality check (agreement with the float
model on held-out calibration images; never an evaluation set). The store verifies the int8 file against
that sha256 before a session opens it, and ``CLEARCUT_MODEL_PRECISION=auto`` uses the variant on CPU only
when its check passed. See docs/int8.md for the measurements behind the defaults.

Steps: (1) the float graph is made plain fp32 at opset >= 13 (ISNet ships with fp16 weights and
Casts; per-channel QDQ needs opset 13); (2) ``quant_pre_process`` (shape inference, graph
optimisation); (3) ``quantize_static`` with a calibration reader that feeds images exactly the way the
service does (stretched square, the model's normalisation). Precision-sensitive nodes stay float: the
first convolution unless the model's recipe says otherwise (it sees the raw image, whose 8-bit grid an
int8 activation grid would coarsen again) and every node between the last convolutions and the outputs
(side-output and fusion heads, their upsampling and the sigmoids): there the logits' range is wide but
the decision happens near 0.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clearcut import config
from clearcut.errors import ModelError
from clearcut.models import cpu, logits
from clearcut.models.cpu import check_applies  # noqa: F401 (quantize.check_applies)
from clearcut.models.registry import INT8_SUFFIX, base_name, int8_name  # noqa: F401 (quantize.INT8_SUFFIX)
from clearcut.models.store import read_recipe, write_recipe

RECIPE_VERSION = 2

# Calibration photos shipped inside the scikit-image wheel (`skimage.data`), fetched with pip at build
# time. Licences as stated in skimage.data's docstrings (scikit-image 0.26.0).
CALIBRATION_PACKAGE = "scikit-image==0.26.0"
CALIBRATION_IMAGES = {
    "astronaut.png": "public domain (NASA)",
    "camera.png": "CC0 (Lav Varshney)",
    "chelsea.png": "CC0 (Stefan van der Walt)",
    "coffee.png": "CC0 (Rachel Michetti)",
    "rocket.jpg": "public domain (SpaceX)",
    "coins.png": "no known copyright restrictions",
    "horse.png": "CC0 (Andreas Preuss)",
    "hubble_deep_field.jpg": "public domain (NASA)",
    "retina.jpg": "CC0 1.0",
    "ihc.png": "no known copyright restrictions",
    "brick.png": "CC0 (CC0Textures)",
    "grass.png": "CC0 (CC0Textures)",
    "gravel.png": "CC0 (CC0Textures)",
    "clock_motion.png": "public domain (Stefan van der Walt)",
    "cell.png": "CC0",
    "text.png": "public domain",
}
# Held out of calibration and used only for the recorded agreement check.
CHECK_IMAGES = ("chelsea.png", "rocket.jpg", "horse.png", "coins.png")
AGREEMENT_FLOOR = 0.95  # mean IoU of (int8 >= 0.5) vs (float >= 0.5) on the check images
# The target on a labelled set (benchmarks/quality.py --int8-check): int8 minus float, plain model output.
MIOU_TOLERANCE = 0.005
BF_TOLERANCE = 0.01


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- calibration images

def default_calibration_dir() -> Path:
    return Path(config.get("CLEARCUT_DATA_DIR")) / "calibration" / CALIBRATION_PACKAGE.replace("==", "-")


def ensure_calibration_images(directory: Path | None = None) -> Path:
    """Extract the calibration photos from the scikit-image wheel (pip download, no install) once."""
    directory = Path(directory or default_calibration_dir())
    if all((directory / f).exists() for f in CALIBRATION_IMAGES):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               CALIBRATION_PACKAGE, "-d", tmp]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
        except subprocess.CalledProcessError as exc:
            raise ModelError(f"could not download the calibration images ({' '.join(cmd)}): "
                             f"{exc.stderr.strip()[-400:]}; pass --calibration DIR with your own photos")
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for member in CALIBRATION_IMAGES:
                (directory / member).write_bytes(zf.read(f"skimage/data/{member}"))
    (directory / "LICENCES.json").write_text(json.dumps(
        {"source": f"pypi:{CALIBRATION_PACKAGE}#skimage/data", "images": CALIBRATION_IMAGES}, indent=1))
    return directory


def list_images(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).iterdir()
                  if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})


def _views(rgb: np.ndarray, count: int) -> list[np.ndarray]:
    """The full image, its mirror image and fixed crops (60-80 % of each side): more varied activations
    than the images alone, at the cost of nothing that could fit one evaluation photo."""
    h, w = rgb.shape[:2]
    views = [rgb, rgb[:, ::-1]]
    boxes = [(0.1, 0.1, 0.8), (0.0, 0.2, 0.7), (0.3, 0.0, 0.7), (0.2, 0.3, 0.6)]
    for top, left, frac in boxes:
        views.append(rgb[int(top * h): int(top * h) + int(frac * h), int(left * w): int(left * w) + int(frac * w)])
    return views[:count]


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@dataclass
class CalibrationSet:
    images: list[Path]
    views_per_image: int

    def inputs(self, model) -> list[np.ndarray]:
        from clearcut.models.session import make_square, preprocess

        out = []
        for path in self.images:
            for view in _views(load_rgb(path), self.views_per_image):
                out.append(preprocess(model, make_square(np.ascontiguousarray(view), model.input_size)))
        return out

    def describe(self) -> list[dict]:
        return [{"file": p.name, "sha256": sha256_bytes(p.read_bytes())} for p in self.images]


# ---------------------------------------------------------------- graph preparation

def to_plain_fp32(model):
    """fp16 initializers/constants -> fp32, Casts to fp16 dropped (they would cast float to float),
    fp16 value types -> fp32, opset raised to 13 when lower (per-channel QDQ needs it)."""
    import onnx
    from onnx import TensorProto, numpy_helper, version_converter

    graph = model.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT16:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    renames: dict[str, str] = {}
    keep = []
    outputs = {o.name for o in graph.output}
    for node in graph.node:  # Casts are not always listed before their consumers: collect them first
        if node.op_type == "Cast" and node.output[0] not in outputs and next(
                a.i for a in node.attribute if a.name == "to") in (TensorProto.FLOAT16, TensorProto.FLOAT):
            renames[node.output[0]] = node.input[0]

    def resolve(name: str) -> str:
        while name in renames:
            name = renames[name]
        return name

    for node in graph.node:
        node.input[:] = [resolve(i) for i in node.input]
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.t.data_type == TensorProto.FLOAT16:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float32)))
        if node.op_type == "Cast":
            to = next(a for a in node.attribute if a.name == "to")
            if to.i in (TensorProto.FLOAT16, TensorProto.FLOAT):
                if node.output[0] in outputs:
                    keep.append(onnx.helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name))
                continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        model = version_converter.convert_version(model, 13)
    return model


DEAD_CHANNEL = 1e-4  # relative to the layer's largest weight
OUTLIER_BIAS = 150.0  # |bias| of a folded Conv; the activations around are ~1-30


def zero_dead_channels(model) -> int:
    """Set trained-out output channels (every weight below DEAD_CHANNEL x the layer's largest) to exactly
    0 and return how many Convs had some. A dead channel's tiny per-channel weight scale would overflow
    its int32 bias (input scale x weight scale); exact zeros get a unit scale. Effect on the output:
    below 1e-4."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    count = 0
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        init = inits[node.input[1]]
        w = numpy_helper.to_array(init).copy()
        peak = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
        dead = peak < DEAD_CHANNEL * peak.max()
        if dead.any():
            w[dead] = 0
            init.CopyFrom(numpy_helper.from_array(w, init.name))
            count += 1
    return count


def outlier_bias_nodes(model) -> list[str]:
    """Convs with a folded bias of |b| >= OUTLIER_BIAS, their ReLU and the node that takes the result on
    (Add, Resize, Concat). U2-Net's last decoder stage has such Convs (u2netp: 228 and 1361, u2net: 185
    and 203, against activations of ~1-30); quantized, they drag their stage's activation SQNR below
    0 dB (measured with quant_debug), and u2netp's mIoU on dev from 0.70 to 0.42. They are small
    (16-64 channels)."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out: list[str] = []
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 3 or node.input[2] not in inits:
            continue
        if np.abs(numpy_helper.to_array(inits[node.input[2]])).max() < OUTLIER_BIAS:
            continue
        out.append(node.name)
        frontier = list(node.output)
        while frontier:
            for n in consumers.get(frontier.pop(), []):
                if n.op_type in ("Conv", "Shape") or n.name in out:
                    continue
                out.append(n.name)
                if n.op_type == "Relu":
                    frontier.extend(n.output)
    return out


def keep_first_output(model):
    """Only the first output (the matte the service reads) stays, with the nodes that feed it. ISNet also
    exports 5 side outputs and 6 decoder feature maps, U2-Net 6 side outputs; nothing reads them, and a
    feature-map output made the whole last decoder stage look like an output head (kept in float: 43 % of
    ISNet's multiply-adds)."""
    del model.graph.output[1:]
    return logits.prune(model)


HEAD_FUSION_CHANNELS = 8  # a Conv with at most this many input channels combines side outputs


def precision_sensitive_nodes(model, *, first_conv: bool = True) -> list[str]:
    """The first Conv(s) fed by the graph input (unless ``first_conv`` is false), and the output head:
    every node from the output back to the last Convs (included), and through a fusion Conv (few input
    channels: U2-Net's 6 side outputs) back to the side-output Convs."""
    from onnx import numpy_helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {i.name: i for i in graph.initializer}
    inputs = {i.name for i in graph.input}
    excluded: list[str] = []

    def add(node):
        if node.name not in excluded:
            excluded.append(node.name)

    # first convolution: the first Conv reachable from the input through non-Conv nodes
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    frontier = list(inputs) if first_conv else []
    seen = set()
    while frontier:
        name = frontier.pop()
        for n in consumers.get(name, []):
            if n.name in seen:
                continue
            seen.add(n.name)
            if n.op_type == "Conv":
                add(n)
            else:
                frontier.extend(n.output)
    # head
    stack = [o.name for o in graph.output]
    visited = set()
    while stack:
        tensor = stack.pop()
        node = producer.get(tensor)
        if node is None or node.name in visited:
            continue
        visited.add(node.name)
        if node.op_type in ("Constant", "Shape"):
            continue
        add(node)
        if node.op_type != "Conv":
            stack.extend(node.input)
        elif node.input[1] in inits and numpy_helper.to_array(inits[node.input[1]]).shape[1] <= HEAD_FUSION_CHANNELS:
            stack.append(node.input[0])
    return excluded


# ---------------------------------------------------------------- build

# Per-model settings measured on eval/dev (docs/int8.md). ``float_nodes``: nodes whose activation SQNR
# against the float model stayed low after the rules above (onnxruntime.quantization.qdq_loss_debug,
# see clearcut/models/quant_debug.py); names of the exact graph the sha256 in the registry pins.
# ``float_first_conv``: keep the first Conv in float. U2-Net and U2-Netp quantize it: its input is an
# 8-bit image (a uint8 grid over the normalised range loses under half a grey level), and a float first
# Conv leaves a full-resolution NCHW float island (a float MaxPool and layout transposes: ~10 % of the
# int8 run).
# ``outlier_rule``: apply ``outlier_bias_nodes``. U2-Net names the one path that matters instead
# (``Conv_920``: without it -0.0054 mIoU; ``Conv_787``'s path costs 9 ms and moved mIoU by 0.0004).
RECIPES = {
    "u2net": {"method": "minmax", "views": 6, "float_first_conv": False, "outlier_rule": False,
              "float_nodes": ("Conv_920", "Relu_921", "Resize_940")},
    "isnet-general": {"method": "percentile", "percentile": 99.99, "views": 2, "float_nodes": ()},
    "u2netp": {"float_first_conv": False},  # same reason as u2net: 1.76x -> 1.90x, mIoU +0.0001 -> +0.0009
}
DEFAULT_RECIPE = {"method": "minmax", "percentile": None, "views": 2, "float_nodes": (),
                  "float_first_conv": True, "outlier_rule": True}
METHODS = ("minmax", "percentile", "entropy")


def recipe_defaults(name: str) -> dict:
    return {**DEFAULT_RECIPE, **RECIPES.get(base_name(name), {})}


def calibrate(prepared: Path, input_name: str, batches, method: str, percentile: float | None, cache: Path) -> None:
    """Activation ranges over all batches, one batch per pass (ISNet at 1024 px holds ~4 GiB of
    intermediate tensors per image; histograms are merged between passes), written where
    ``quantize_static`` reads them (``calibration_cache_path``)."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    kind = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[method]
    options = {"symmetric": False}
    if method == "percentile":
        options.update(percentile=percentile, num_bins=2048)
    calibrator = create_calibrator(prepared, [], augmented_model_path=str(cache.with_suffix(".aug.onnx")),
                                   calibrate_method=kind, extra_options=options)
    for batch in batches:
        calibrator.collect_data(_Reader(input_name, [batch]))
    save_tensors_data(calibrator.compute_data(), cache)


def prepare(float_path: Path, plain: Path, prepared: Path):
    """The float graph as it is quantized: plain fp32, first output only (``plain``), then ONNX Runtime's
    pre-processing and dead channels zeroed (``prepared``, returned). Its tensor names are those of the
    int8 model, so the two can be compared tensor by tensor."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx.save(keep_first_output(to_plain_fp32(onnx.load(str(float_path)))), str(plain))
    quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
    graph = onnx.load(str(prepared))
    zero_dead_channels(graph)
    onnx.save(graph, str(prepared))
    return graph


class _Reader:
    def __init__(self, input_name: str, batches: list[np.ndarray]):
        self.input_name, self.batches, self.i = input_name, batches, 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.input_name: self.batches[self.i - 1]}

    def rewind(self):
        self.i = 0


def default_reduce_range(kernels: str | None = None) -> bool:
    """7-bit weights where this CPU's u8s8 kernels saturate (``cpu.int8_kernels``): ONNX Runtime's own
    advice for AVX2 without VNNI. It keeps every pair of products inside the 16-bit lane (u2netp-int8's
    agreement with float on the held-out photos: 0.85 -> 0.96 on an AVX2 EPYC). With VNNI full-range
    weights are kept: nothing saturates, and the files measured there stay byte-identical."""
    return (kernels or cpu.int8_kernels()) == "u8s8-saturating"


def build(name: str, *, calibration: Path | None = None, method: str | None = None, percentile: float | None = None,
          images: int | None = None, views: int | None = None, store=None, check: bool = True,
          reduce_range: bool | None = None, log=print) -> dict:
    """Quantize ``name`` into ``NAME-int8`` in the store and return the recipe (also written beside it).
    Unset options take the model's measured defaults (``RECIPES``); ``reduce_range`` defaults to
    ``default_reduce_range()`` for the CPU that builds."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from clearcut.models.registry import spec
    from clearcut.models.store import ModelStore, sha256_of

    store = store or ModelStore()
    model_spec = spec(base_name(name))
    defaults = recipe_defaults(model_spec.name)
    method = method or defaults["method"]
    if method not in METHODS:
        raise ModelError(f"calibration method must be one of {', '.join(METHODS)}")
    percentile = (percentile or defaults["percentile"] or 99.99) if method == "percentile" else None
    views = views or defaults["views"]
    reduce_range = default_reduce_range() if reduce_range is None else reduce_range
    float_path = store.path(model_spec.name)
    custom_dir = calibration is not None
    directory = Path(calibration) if custom_dir else ensure_calibration_images()
    paths = list_images(directory)
    if not custom_dir:
        paths = [p for p in paths if p.name not in CHECK_IMAGES]
    if images:
        paths = paths[:images]
    if not paths:
        raise ModelError(f"no calibration images (png/jpg/webp/bmp/tiff) in {directory}")
    calib = CalibrationSet(paths, views)

    out_name = int8_name(model_spec.name)
    final = store.directory / f"{out_name}.onnx"
    with tempfile.TemporaryDirectory(dir=store.directory) as tmp:
        tmp = Path(tmp)
        plain, prepared = tmp / "fp32.onnx", tmp / "prepared.onnx"
        graph = prepare(float_path, plain, prepared)
        names = {n.name for n in graph.graph.node}
        excluded: list[str] = []
        for node in [*precision_sensitive_nodes(graph, first_conv=defaults["float_first_conv"]),
                     *(outlier_bias_nodes(graph) if defaults["outlier_rule"] else []),
                     *(n for n in defaults["float_nodes"] if n in names)]:
            if node not in excluded:
                excluded.append(node)
        input_name = graph.graph.input[0].name
        log(f"{out_name}: calibrating on {len(paths)} images x {views} views ({method}"
            f"{f' {percentile}' if percentile else ''}), {len(excluded)} nodes kept in float")
        cache = tmp / "ranges.json"
        calibrate(prepared, input_name, calib.inputs(model_spec), method, percentile, cache)
        partial = tmp / "int8.onnx"
        quantize_static(str(prepared), str(partial), None, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                        calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                                          "entropy": CalibrationMethod.Entropy}[method],
                        nodes_to_exclude=excluded, calibration_cache_path=str(cache))
        digest = sha256_of(partial)
        recipe = {
            "recipe_version": RECIPE_VERSION, "name": out_name, "base": model_spec.name,
            "base_sha256": model_spec.sha256, "file": final.name, "sha256": digest,
            "onnxruntime": ort.__version__, "onnx": onnx.__version__,
            "format": "QDQ", "per_channel": True, "activations": "uint8 (asymmetric)", "weights": "int8",
            "reduce_range": reduce_range, "outputs": "first only (the matte)",
            "opset": next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
            "calibration": {"method": method, "source": str(directory) if custom_dir
                            else f"pypi:{CALIBRATION_PACKAGE}#skimage/data",
                            "views_per_image": views, "images": calib.describe(),
                            **({"percentile": percentile} if percentile else {})},
            "excluded_nodes": excluded,
        }
        if check:
            recipe["quality_check"] = agreement_check(model_spec, plain, partial,
                                                      [] if custom_dir else [directory / f for f in CHECK_IMAGES])
            log(f"{out_name}: agreement with float on held-out images: {recipe['quality_check']}")
            recorded = recorded_check(digest, recipe["quality_check"])
            if recorded is not None:
                recipe["quality_check"] = recorded
                log(f"{out_name}: byte-identical to a file measured on a labelled set: {recorded['labelled']}")
        else:
            recipe["quality_check"] = {"passed": False, "reason": "not run"}
        os.replace(partial, final)
    write_recipe(store, recipe)
    return recipe


def agreement_check(model_spec, float_path: Path, int8_path: Path, images: list[Path]) -> dict:
    """IoU of the int8 and float masks (threshold 0.5) on held-out images, each in 2 views."""
    import onnxruntime as ort

    from clearcut.models.session import make_square, preprocess

    if not images:
        return {"passed": False, "reason": "custom calibration set: no held-out check images"}
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (float_path, int8_path)]
    ious = []
    for path in images:
        for view in _views(load_rgb(path), 2):
            x = preprocess(model_spec, make_square(np.ascontiguousarray(view), model_spec.input_size))
            a, b = (s.run(None, {s.get_inputs()[0].name: x})[0][0, 0] >= 0.5 for s in sessions)
            union = np.count_nonzero(a | b)
            ious.append(1.0 if union == 0 else np.count_nonzero(a & b) / union)
    mean = float(np.mean(ious))
    return {"images": [p.name for p in images], "views": 2, "mean_iou_vs_float": round(mean, 4),
            "min_iou_vs_float": round(float(np.min(ious)), 4), "floor": AGREEMENT_FLOOR,
            "passed": mean >= AGREEMENT_FLOOR, "int8_kernels": cpu.int8_kernels()}


def record_labelled_check(store, name: str, *, label: str, images: int, fp32: dict, int8: dict) -> dict:
    """Record a measurement on a labelled set (mean IoU and boundary F of the plain model output, float
    and int8, same images) as the variant's quality check: it passes when int8 loses at most
    MIOU_TOLERANCE mIoU and BF_TOLERANCE boundary F. It then decides ``auto`` precision instead of the
    build's agreement check on held-out photos (which stays recorded beside it)."""
    recipe = read_recipe(store, name)
    if recipe is None:
        raise ModelError(f"{int8_name(name)!r} is not built; run: clearcut models quantize {base_name(name)}")
    recipe["quality_check"] = labelled_check(recipe.get("quality_check", {}), label=label, images=images,
                                             fp32=fp32, int8=int8)
    write_recipe(store, recipe)
    return recipe["quality_check"]


def labelled_check(previous: dict, *, label: str, images: int, fp32: dict, int8: dict,
                   int8_kernels: str | None = None, **extra) -> dict:
    """The quality check of a labelled-set measurement, keeping the build's agreement check beside it.
    ``int8_kernels``: the CPU kernel family it was measured with (default: this CPU's)."""
    d_iou, d_bf = int8["iou"] - fp32["iou"], int8["bf"] - fp32["bf"]
    return {
        "int8_kernels": int8_kernels or cpu.int8_kernels(),
        "agreement": previous.get("agreement", previous),
        "labelled": {"set": label, "images": images, "miou_fp32": round(fp32["iou"], 4),
                     "miou_int8": round(int8["iou"], 4), "bf_fp32": round(fp32["bf"], 4),
                     "bf_int8": round(int8["bf"], 4), "miou_delta": round(d_iou, 4), "bf_delta": round(d_bf, 4),
                     "tolerance": {"miou": MIOU_TOLERANCE, "bf": BF_TOLERANCE}, **extra},
        "passed": bool(d_iou >= -MIOU_TOLERANCE and d_bf >= -BF_TOLERANCE),
    }


# Labelled-set checks measured (``benchmarks/quality.py --plain --limit 100 --int8-check`` on eval/dev) on
# these exact int8 files, keyed by their sha256 and by the CPU's int8 kernel family (``cpu.int8_kernels``:
# the same file loses accuracy where the kernels saturate). A build that reproduces one byte for byte (same
# recipe, calibration images and ONNX Runtime; the builds here are deterministic) on such a CPU records
# that measurement as its check, so a machine without the evaluation set (a container build) gets the
# same ``auto`` decision. Any other file, or CPU family, keeps the build's own agreement check.
_DEV100 = "dev (100 images spread over the set)"


def _dev100(fp32: tuple[float, float], int8: tuple[float, float]) -> dict:
    return {"label": _DEV100, "images": 100, "fp32": {"iou": fp32[0], "bf": fp32[1]},
            "int8": {"iou": int8[0], "bf": int8[1]}}


RECORDED_CHECKS = {
    "c9a353c1dbccf5c9007aa4dfa6fecd83b12f28b7794d1f740aeb47382536a75c": {  # u2net-int8 (the recipe in RECIPES)
        "vnni": _dev100((0.7463, 0.7384), (0.7444, 0.7392)),
        "u8s8-saturating": _dev100((0.7463, 0.7384), (0.7170, 0.7023))},
    "d0009fdc674259b46a4061bdfea352a9b3dd82797c2a7da00684fc366867feec": {  # isnet-general-int8
        "vnni": _dev100((0.7883, 0.8021), (0.7899, 0.8031)),
        "u8s8-saturating": _dev100((0.7883, 0.8021), (0.7920, 0.8047))},
    "1af40176c02b2d0991d4642511bbd466b621cf9be12cd52ead8157ed6131acd6": {  # u2netp-int8, first Conv quantized
        "vnni": _dev100((0.7017, 0.6871), (0.7026, 0.6858)),
        "u8s8-saturating": _dev100((0.7017, 0.6871), (0.6911, 0.6682))},
    # Built on an AVX2 CPU with 7-bit weights (``default_reduce_range``), measured there:
    "bb9e7b706c3fb1c426723e1d7e80b71c8f7ff7bb07489fcd59877117f50e103f": {  # u2net-int8
        "u8s8-saturating": _dev100((0.7463, 0.7384), (0.7420, 0.7342))},
    "79fc799b0d72d8ccf5db0bcd8e3e720192a980d11cf436f4af33d63bd4866da0": {  # isnet-general-int8
        "u8s8-saturating": _dev100((0.7883, 0.8021), (0.7924, 0.8058))},
    "6cefcbb3b8a7aee2f9ad61dbc95bafa9ec054e7b0bbb2bb19ad44e695441eb7e": {  # u2netp-int8
        "u8s8-saturating": _dev100((0.7017, 0.6871), (0.6961, 0.6745))},
}


def recorded_check(digest: str, agreement: dict, kernels: str | None = None) -> dict | None:
    """The labelled check recorded for this file on CPUs of ``kernels`` (default: this CPU's), if any."""
    kernels = kernels or cpu.int8_kernels()
    measured = RECORDED_CHECKS.get(digest, {}).get(kernels)
    if measured is None:
        return None
    return labelled_check(agreement, **measured, int8_kernels=kernels,
                          source="recorded for this file's sha256 (quantize.RECORDED_CHECKS)")



