"""The networks' logits at their own output resolution, and the probability they stand for.

ISNet's last layers compute a 512 x 512 map of logits, enlarge it to the 1024 px input by bilinear
interpolation and apply a sigmoid (its training loss is taken on exactly that enlarged map); U2-Net's
sigmoid acts on a map at its input size. ``logit_head`` cuts a graph before that head, so the session
returns the logits on the network's own grid, and the pipeline brings *them* to the photo's size before
the sigmoid (``to_size``) instead of interpolating probabilities.

Why it matters at full resolution: a structure the network resolves as a logit peak narrower than its
pixel (a wire: +3 at one pixel, -10 around it) crosses 0 over a sub-pixel width that interpolation of
the logits keeps at any output size, while the probabilities at the 1024 px samples either side
(logit -0.25, p 0.44) already miss it and no later interpolation of them brings it back. The sigmoid's
0.5 level is where the interpolated logit crosses 0, the same rule the network was trained with at
1024 px (benchmarks/QUALITY.md, section 23).
"""
from __future__ import annotations

import cv2
import numpy as np

# Nodes that pass a tensor through without changing what it means (precision or quantisation only).
_PASS_THROUGH = frozenset({"Cast", "Identity", "QuantizeLinear", "DequantizeLinear"})
_LOGIT_LIMIT = 30.0  # |logit| kept when a probability output has to be turned back into logits


def prune(model):
    """Keep only the nodes, initializers and value infos that feed the graph's outputs (ONNX Runtime
    would otherwise compute every side output a graph still exports)."""
    graph = model.graph
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output}
    needed, live, stack = set(), set(), [o.name for o in graph.output]
    while stack:
        tensor = stack.pop()
        if tensor in needed:
            continue
        needed.add(tensor)
        index = producer.get(tensor)
        if index is not None and index not in live:
            live.add(index)
            stack.extend(i for i in graph.node[index].input if i)
    nodes = [n for i, n in enumerate(graph.node) if i in live]
    del graph.node[:]
    graph.node.extend(nodes)
    for field in (graph.initializer, graph.value_info):
        kept = [x for x in field if x.name in needed]
        del field[:]
        field.extend(kept)
    return model


def _through(name: str, producer: dict) -> object | None:
    """The first node behind ``name`` that is not a pass-through (None for a graph input or initializer)."""
    node = producer.get(name)
    while node is not None and node.op_type in _PASS_THROUGH:
        node = producer.get(node.input[0])
    return node


def _elem_type(model, name: str, producer: dict) -> int:
    from onnx import TensorProto

    node = producer.get(name)
    if node is not None and node.op_type == "Cast":
        return next(a.i for a in node.attribute if a.name == "to")
    for value in model.graph.value_info:
        if value.name == name:
            return value.type.tensor_type.elem_type
    return TensorProto.FLOAT  # DequantizeLinear's output, or an fp32 graph's tensor


def _attr(node, name: str, default: bytes) -> bytes:
    return next((a.s for a in node.attribute if a.name == name), default)


# Resize coordinate modes that map pixel centres to pixel centres, as OpenCV's INTER_LINEAR does when enlarging.
_PIXEL_CENTRES = (b"half_pixel", b"pytorch_half_pixel")


def logit_head(model) -> tuple[object, bool]:
    """``model`` (an ``onnx.ModelProto``, changed in place) with its first output replaced by the
    logits before the final sigmoid, and before the bilinear enlargement on pixel centres that precedes
    it if there is one (any other resize stays in the graph), pruned to what feeds them; ``(model, True)``.
    A graph whose first output is not a sigmoid is returned as it is with ``False``: its output is a
    probability."""
    from onnx import helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    head = _through(graph.output[0].name, producer)
    if head is None or head.op_type != "Sigmoid":
        return model, False
    tensor = head.input[0]
    resize = _through(tensor, producer)
    if resize is not None and resize.op_type == "Resize" and _attr(resize, "mode", b"nearest") == b"linear" \
            and _attr(resize, "coordinate_transformation_mode", b"half_pixel") in _PIXEL_CENTRES:
        tensor = resize.input[0]  # to_size repeats it (OpenCV's bilinear maps pixel centres the same way)
    output = helper.make_tensor_value_info(tensor, _elem_type(model, tensor, producer), None)
    del graph.output[:]
    graph.output.append(output)
    return prune(model), True


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 logistic function (OpenCV's exp: 1.4 M values in ~3 ms)."""
    e = cv2.exp(np.negative(np.asarray(x, np.float32)))
    e += np.float32(1.0)
    return np.divide(np.float32(1.0), e, out=e)


def from_probability(p: np.ndarray) -> np.ndarray:
    """Logits of a probability map (for a graph without a sigmoid head), kept within +-_LOGIT_LIMIT."""
    p = np.asarray(p, np.float32)
    with np.errstate(divide="ignore"):  # 0 and 1 give -inf and +inf, clipped to the limit
        out = np.log(p) - np.log1p(-p)
    return np.clip(out, -_LOGIT_LIMIT, _LOGIT_LIMIT, out=out).astype(np.float32, copy=False)


def grows(logits: np.ndarray, shape: tuple[int, ...]) -> bool:
    """True when neither axis of ``shape`` is smaller than the logit map's."""
    return shape[0] >= logits.shape[0] and shape[1] >= logits.shape[1]


def to_size(logits: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The probability at ``shape`` (rows, cols) of a logit map that covers the same image: the logits
    enlarged by bilinear interpolation on pixel centres (what ISNet's own Resize does, ``half_pixel``),
    then the sigmoid. Only for enlarging: a shrinking axis is the caller's to antialias."""
    h, w = shape[:2]
    if logits.shape != (h, w):
        logits = cv2.resize(np.asarray(logits, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return sigmoid(logits)
