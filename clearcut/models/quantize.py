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
first convolution (it sees the raw image, whose 8-bit grid an int8 activation grid would coarsen
again) and every node between the last convolutions and the outputs (side-output and fusion heads,
their upsampling and the sigmoids): there the logits' range is wide but the decision happens near 0.
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

INT8_SUFFIX = "-int8"
RECIPE_VERSION = 1

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


def int8_name(name: str) -> str:
    return name if name.endswith(INT8_SUFFIX) else name + INT8_SUFFIX


def base_name(name: str) -> str:
    return name[: -len(INT8_SUFFIX)] if name.endswith(INT8_SUFFIX) else name


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
        from clearcut.models.session import preprocess
        from clearcut.pipeline.segment import make_square

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


def dead_channel_nodes(model) -> list[str]:
    """Convs with trained-out output channels (every weight below DEAD_CHANNEL x the layer's largest),
    and the nodes from them to the next Convs. Such a channel outputs its bias, a constant that can be
    hundreds of times larger than the other channels (U2-Net: 1361 against ~1), so one per-tensor
    activation scale for that tensor wipes out every other channel; and its tiny per-channel weight
    scale overflows the int32 bias. Keeping these few nodes in float is what makes U2-Net quantizable."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out: list[str] = []
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        init = inits[node.input[1]]
        w = numpy_helper.to_array(init).copy()
        peak = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
        dead = peak < DEAD_CHANNEL * peak.max()
        if not dead.any():
            continue
        # Exactly zero weights get a unit scale (no int32 bias overflow); their effect was < 1e-4.
        w[dead] = 0
        init.CopyFrom(numpy_helper.from_array(w, init.name))
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] in inits else None
        relu_only = all(n.op_type == "Relu" for n in consumers.get(node.output[0], []))
        if relu_only and (bias is None or not (bias[dead] > 0).any()):
            continue  # the dead channels output <= 0, which the following ReLU turns into zeros
        out.append(node.name)
        frontier, seen = list(node.output), set()
        while frontier:
            for n in consumers.get(frontier.pop(), []):
                if n.name in seen:
                    continue
                seen.add(n.name)
                if n.name not in out:
                    out.append(n.name)
                if n.op_type != "Conv":
                    frontier.extend(n.output)
    return out


def precision_sensitive_nodes(model) -> list[str]:
    """The first Conv(s) fed by the graph input, and every node on the paths from the last Convs to the
    outputs (found by walking back from each output until a Conv, which is included)."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
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
    frontier = list(inputs)
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
    # heads
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
    return excluded


# ---------------------------------------------------------------- build

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


def build(name: str, *, calibration: Path | None = None, method: str = "minmax", images: int | None = None,
          views: int = 2, store=None, exclude_sensitive: bool = True, check: bool = True,
          activations: str = "uint8", reduce_range: bool = False, log=print) -> dict:
    """Quantize ``name`` into ``NAME-int8`` in the store and return the recipe (also written beside it)."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from clearcut.models.registry import spec
    from clearcut.models.store import ModelStore, sha256_of

    store = store or ModelStore()
    model_spec = spec(base_name(name))
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
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ModelError(f"calibration method must be one of {', '.join(methods)}")

    out_name = int8_name(model_spec.name)
    final = store.directory / f"{out_name}.onnx"
    with tempfile.TemporaryDirectory(dir=store.directory) as tmp:
        tmp = Path(tmp)
        plain = tmp / "fp32.onnx"
        onnx.save(to_plain_fp32(onnx.load(str(float_path))), str(plain))
        prepared = tmp / "prepared.onnx"
        quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared))
        dead = dead_channel_nodes(graph)
        onnx.save(graph, str(prepared))
        excluded = dead + [n for n in (precision_sensitive_nodes(graph) if exclude_sensitive else []) if n not in dead]
        input_name = graph.graph.input[0].name
        log(f"{out_name}: calibrating on {len(paths)} images x {views} views ({method}), "
            f"{len(excluded)} nodes kept in float")
        batches = calib.inputs(model_spec)
        extra = {"CalibPercentile": 99.999} if method == "percentile" else {}
        partial = tmp / "int8.onnx"
        quantize_static(str(prepared), str(partial), _Reader(input_name, batches),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8, reduce_range=reduce_range,
                        calibrate_method=methods[method], nodes_to_exclude=excluded,
                        extra_options={"CalibTensorRangeSymmetric": False, **extra})
        digest = sha256_of(partial)
        recipe = {
            "recipe_version": RECIPE_VERSION, "name": out_name, "base": model_spec.name,
            "base_sha256": model_spec.sha256, "file": final.name, "sha256": digest,
            "onnxruntime": ort.__version__, "onnx": onnx.__version__,
            "format": "QDQ", "per_channel": True, "activations": f"{activations} (asymmetric)", "weights": "int8", "reduce_range": reduce_range,
            "opset": next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
            "calibration": {"method": method, "source": str(directory) if custom_dir
                            else f"pypi:{CALIBRATION_PACKAGE}#skimage/data",
                            "views_per_image": views, "images": calib.describe(),
                            **({"percentile": 99.999} if method == "percentile" else {})},
            "excluded_nodes": excluded, "dead_channel_nodes": len(dead),
        }
        if check:
            recipe["quality_check"] = agreement_check(model_spec, plain, partial,
                                                      [] if custom_dir else [directory / f for f in CHECK_IMAGES])
            log(f"{out_name}: agreement with float on held-out images: {recipe['quality_check']}")
        else:
            recipe["quality_check"] = {"passed": False, "reason": "not run"}
        os.replace(partial, final)
    write_recipe(store, recipe)
    return recipe


def agreement_check(model_spec, float_path: Path, int8_path: Path, images: list[Path]) -> dict:
    """IoU of the int8 and float masks (threshold 0.5) on held-out images, each in 2 views."""
    import onnxruntime as ort

    from clearcut.models.session import preprocess
    from clearcut.pipeline.segment import make_square

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
            "passed": mean >= AGREEMENT_FLOOR}


# ---------------------------------------------------------------- recipe

def recipe_path(store, name: str) -> Path:
    return store.directory / f"{int8_name(name)}.json"


def write_recipe(store, recipe: dict) -> Path:
    path = recipe_path(store, recipe["name"])
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(recipe, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_recipe(store, name: str) -> dict | None:
    path = recipe_path(store, name)
    if not path.exists():
        return None
    return json.loads(path.read_text())
