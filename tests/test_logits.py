"""The networks' logits on their own grid (clearcut.models.logits) and what the pipeline does with them."""
from __future__ import annotations

import numpy as np
import pytest

from clearcut.models import logits


def _isnet_like_head(tmp_path, coordinates="half_pixel"):
    """A graph shaped like ISNet's head: a stride-2 Conv (the logits at half the input size), Casts to and
    from fp16 around a bilinear 2x Resize on pixel centres, a Sigmoid, and a side output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    weight = numpy_helper.from_array(rng.normal(0, 2, (1, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.array([-1.0], np.float32), "b")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["side"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["side"], ["side_f"], to=TensorProto.FLOAT),
        helper.make_node("Resize", ["side_f", "", "scales"], ["up"], mode="linear",
                         coordinate_transformation_mode=coordinates),
        helper.make_node("Cast", ["up"], ["up16"], to=TensorProto.FLOAT16),
        helper.make_node("Sigmoid", ["up16"], ["p16"]),
        helper.make_node("Cast", ["p16"], ["output"], to=TensorProto.FLOAT),
        helper.make_node("Relu", ["side"], ["side_output"]),
    ]
    graph = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 16, 16]),
         helper.make_tensor_value_info("side_output", TensorProto.FLOAT, [1, 1, 8, 8])],
        [weight, bias, scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = tmp_path / "head.onnx"
    onnx.save(model, str(path))
    return path


def test_logit_head_cuts_before_the_resize_and_sigmoid_and_reproduces_the_output(tmp_path):
    import onnx
    import onnxruntime as ort

    path = _isnet_like_head(tmp_path)
    x = np.random.default_rng(5).normal(0, 1, (1, 3, 16, 16)).astype(np.float32)
    published = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["output"], {"input": x})[0]
    cut, found = logits.logit_head(onnx.load(str(path)))
    assert found and [o.name for o in cut.graph.output] == ["side_f"]
    assert {n.op_type for n in cut.graph.node} == {"Conv", "Cast"}  # head and side output pruned
    raw = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert raw.shape == (1, 1, 8, 8) and raw.min() < -1 and raw.max() > 1  # logits, not probabilities
    # enlarged on pixel centres, then the sigmoid: the published output within its fp16 rounding
    assert np.abs(logits.to_size(raw[0, 0], (16, 16)) - published[0, 0]).max() < 1e-3


def test_a_resize_that_does_not_map_pixel_centres_stays_in_the_graph(tmp_path):
    import onnx

    cut, found = logits.logit_head(onnx.load(str(_isnet_like_head(tmp_path, "align_corners"))))
    assert found and [o.name for o in cut.graph.output] == ["up16"]  # the sigmoid's input, after the Resize
    assert "Resize" in {n.op_type for n in cut.graph.node}


def test_a_graph_without_a_sigmoid_head_is_left_as_it_is(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 4, 4])])
    model, found = logits.logit_head(helper.make_model(graph))
    assert not found and [o.name for o in model.graph.output] == ["output"]
    p = np.array([0.0, 0.25, 0.5, 1.0], np.float32)
    back = logits.sigmoid(logits.from_probability(p))
    assert np.allclose(back, p, atol=1e-6) and np.isfinite(logits.from_probability(p)).all()


def test_the_session_returns_logits_on_the_network_grid_and_predict_matches_the_published_graph(model_dir):
    import onnxruntime as ort

    from clearcut.models.registry import spec
    from clearcut.models.session import get_session, preprocess
    from clearcut.models.store import ModelStore

    store = ModelStore(model_dir)
    session = get_session("u2netp", store)
    rgb = np.full((320, 320, 3), 230, np.uint8)
    yy, xx = np.mgrid[0:320, 0:320]
    rgb[(yy - 160) ** 2 + (xx - 150) ** 2 < 90 ** 2] = (200, 30, 30)
    raw = session.predict_logits(rgb)
    assert session.logit_output and raw.shape == (320, 320) and raw.dtype == np.float32
    assert raw.min() < -3 and raw.max() > 3
    published = ort.InferenceSession(str(store.path("u2netp")), providers=["CPUExecutionProvider"])
    expected = published.run(None, {published.get_inputs()[0].name: preprocess(spec("u2netp"), rgb)})[0][0, 0]
    assert np.abs(session.predict(rgb) - expected).max() < 1e-5
    with pytest.raises(ValueError, match="square"):
        session.predict_logits(rgb[:200])


def test_a_logit_peak_narrower_than_a_network_pixel_survives_enlargement_with_its_true_width():
    """A wire one network pixel wide, logit +3 against -10: the interpolated logit is above 0 within
    3/13 of a pixel either side of its centre, so enlarged 8x it is 2 x 3/13 x 8 = 3.7 px wide at every
    row. Going through probabilities at twice the network's grid (the old route) loses it: the samples a
    quarter pixel either side of the centre already have logit -0.25, p 0.44."""
    grid = np.full((64, 64), -10.0, np.float32)
    grid[:, 30] = 3.0
    alpha = logits.to_size(grid, (512, 512))
    width = (alpha[40:470] >= 0.5).sum(axis=1)
    assert width.min() >= 3 and width.max() <= 4
    centre = 30 * 8 + 3.5  # pixel centres: network pixel 30 spans 240..247
    cols = np.flatnonzero(alpha[256] >= 0.5)
    assert abs(cols.mean() - centre) <= 0.5
    import cv2

    twice = logits.sigmoid(cv2.resize(grid, (128, 128), interpolation=cv2.INTER_LINEAR))
    old = cv2.resize(twice, (512, 512), interpolation=cv2.INTER_LINEAR)
    assert (old >= 0.5).sum() == 0
