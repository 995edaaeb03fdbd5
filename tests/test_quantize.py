"""Calibrated int8 variants: build u2netp-int8 with a few calibration photos, then check it loads, runs,
is reproducible, stays close to the float model on dev frames, and that precision selection works."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from clearcut.errors import ChecksumMismatch, ModelError
from clearcut.models import cpu, quantize
from clearcut.models.session import CPU, CUDA, SegmentationSession, get_session, resolve_precision
from clearcut.models.registry import spec
from clearcut.models.store import ModelStore, sha256_of
from clearcut.pipeline.segment import make_square
from tests.conftest import EVAL_DEV

BUILD = {"images": 3, "views": 1}
DEV_FRAMES = ["davis16val_blackswan_00000", "davis16val_car-shadow_00013", "davis16val_dog_00000"]


@pytest.fixture(scope="module")
def built(model_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("int8-store")
    shutil.copyfile(model_dir / "u2netp.onnx", directory / "u2netp.onnx")
    store = ModelStore(directory)
    recipe = quantize.build("u2netp", store=store, log=lambda *_: None, **BUILD)
    return store, recipe


def test_build_records_a_recipe_that_round_trips(built):
    store, recipe = built
    assert recipe["name"] == "u2netp-int8" and recipe["base_sha256"] == spec("u2netp").sha256
    assert quantize.read_recipe(store, "u2netp-int8") == recipe == store.recipe("u2netp")
    assert sha256_of(store.directory / "u2netp-int8.onnx") == recipe["sha256"]
    calibration = quantize.ensure_calibration_images()
    assert len(recipe["calibration"]["images"]) == 3
    for image in recipe["calibration"]["images"]:  # the recorded sha256 are those of the files used
        assert image["file"] not in quantize.CHECK_IMAGES
        assert quantize.sha256_bytes((calibration / image["file"]).read_bytes()) == image["sha256"]
    assert recipe["calibration"]["method"] == "minmax" and recipe["per_channel"] and recipe["format"] == "QDQ"
    import onnxruntime
    assert recipe["onnxruntime"] == onnxruntime.__version__
    assert recipe["excluded_nodes"] and recipe["opset"] >= 13
    assert set(recipe["quality_check"]) >= {"mean_iou_vs_float", "passed", "images"}
    assert recipe["quality_check"]["int8_kernels"] == cpu.int8_kernels()  # the CPU family it was measured on
    assert recipe["reduce_range"] is quantize.default_reduce_range()


def test_int8_model_is_quantized_loads_and_runs(built):
    import onnx

    store, _ = built
    graph = onnx.load(str(store.path("u2netp-int8"))).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    session = get_session("u2netp-int8", store)
    assert session.model.name == "u2netp-int8" and session.size == 320
    assert session.logit_output  # the sigmoid head is found behind the quantisation nodes
    out = session.predict(np.full((200, 320, 3), 128, np.uint8))
    assert out.shape == (200, 320) and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1


def test_rebuild_with_the_same_inputs_gives_the_same_sha256(built, tmp_path):
    store, recipe = built
    shutil.copyfile(store.directory / "u2netp.onnx", tmp_path / "u2netp.onnx")
    again = quantize.build("u2netp", store=ModelStore(tmp_path), check=False, log=lambda *_: None, **BUILD)
    assert again["sha256"] == recipe["sha256"]


def test_tampered_int8_file_is_refused(built, tmp_path):
    store, _ = built
    for name in ("u2netp-int8.onnx", "u2netp-int8.json"):
        shutil.copyfile(store.directory / name, tmp_path / name)
    with open(tmp_path / "u2netp-int8.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ChecksumMismatch, match="clearcut models quantize u2netp"):
        ModelStore(tmp_path).path("u2netp-int8")


@pytest.mark.skipif(not (EVAL_DEV / "images").is_dir(), reason="eval/dev not available")
def test_int8_stays_close_to_float_on_dev_frames(built):
    store, _ = built
    fp32 = SegmentationSession(spec("u2netp"), store.path("u2netp"), threads=1)
    int8 = SegmentationSession(spec("u2netp-int8"), store.path("u2netp-int8"), threads=1)
    agreement, gt_iou = [], {"fp32": [], "int8": []}
    for frame in DEV_FRAMES:
        rgb = np.asarray(Image.open(EVAL_DEV / "images" / f"{frame}.jpg").convert("RGB"))
        mask = np.asarray(Image.open(EVAL_DEV / "masks" / f"{frame}.png").convert("L")) >= 128
        square = make_square(rgb, 320)
        a, b = fp32.predict(square) >= 0.5, int8.predict(square) >= 0.5
        agreement.append(np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b)))
        gt = make_square(mask.astype(np.uint8) * 255, 320) >= 128
        for key, pred in (("fp32", a), ("int8", b)):
            gt_iou[key].append(np.count_nonzero(pred & gt) / max(1, np.count_nonzero(pred | gt)))
    assert np.mean(agreement) >= 0.85, agreement
    assert np.mean(gt_iou["int8"]) >= np.mean(gt_iou["fp32"]) - 0.05, gt_iou


def _store_with_check(built, tmp_path, passed: bool) -> ModelStore:
    store, recipe = built
    shutil.copyfile(store.directory / "u2netp.onnx", tmp_path / "u2netp.onnx")
    shutil.copyfile(store.directory / "u2netp-int8.onnx", tmp_path / "u2netp-int8.onnx")
    changed = {**recipe, "quality_check": {**recipe["quality_check"], "passed": passed}}
    (tmp_path / "u2netp-int8.json").write_text(json.dumps(changed))
    return ModelStore(tmp_path)


def test_auto_precision_uses_int8_on_cpu_only_when_its_check_passed(built, tmp_path, monkeypatch):
    monkeypatch.setenv("CLEARCUT_MODEL_PRECISION", "auto")
    (tmp_path / "ok").mkdir()
    (tmp_path / "bad").mkdir()
    ok = _store_with_check(built, tmp_path / "ok", True)
    bad = _store_with_check(built, tmp_path / "bad", False)
    assert resolve_precision("u2netp", ok, provider=CPU) == "u2netp-int8"
    assert get_session("u2netp", ok).model.name == "u2netp-int8"
    assert resolve_precision("u2netp", ok, provider=CUDA) == "u2netp"  # GPU keeps float
    assert resolve_precision("u2netp", bad, provider=CPU) == "u2netp"
    assert resolve_precision("u2net", ok, provider=CPU) == "u2net"  # no variant built


def test_precision_override(built, tmp_path, monkeypatch):
    (tmp_path / "bad").mkdir()
    bad = _store_with_check(built, tmp_path / "bad", False)
    monkeypatch.setenv("CLEARCUT_MODEL_PRECISION", "int8")  # forced even though the check failed
    assert resolve_precision("u2netp", bad, provider=CPU) == "u2netp-int8"
    monkeypatch.setenv("CLEARCUT_MODEL_PRECISION", "fp32")
    assert resolve_precision("u2netp", bad, provider=CPU) == "u2netp"
    assert resolve_precision("u2netp-int8", bad) == "u2netp-int8"  # an explicit name wins
    monkeypatch.setenv("CLEARCUT_MODEL_PRECISION", "int8")
    with pytest.raises(ModelError, match="clearcut models quantize u2net") as err:
        resolve_precision("u2net", bad, provider=CPU)
    assert err.value.code == "model_unavailable"
    monkeypatch.setenv("CLEARCUT_MODEL_PRECISION", "half")
    with pytest.raises(Exception, match="CLEARCUT_MODEL_PRECISION"):
        resolve_precision("u2netp", bad, provider=CPU)


def test_missing_int8_says_how_to_build_it(tmp_path):
    with pytest.raises(ModelError, match="clearcut models quantize u2netp"):
        ModelStore(tmp_path).path("u2netp-int8")


def test_labelled_check_decides_auto_precision_by_the_target_tolerances(built, tmp_path, monkeypatch):
    monkeypatch.setenv("CLEARCUT_MODEL_PRECISION", "auto")
    store = _store_with_check(built, tmp_path, False)
    fp32 = {"iou": 0.75, "bf": 0.74}
    check = quantize.record_labelled_check(store, "u2netp", label="dev", images=100, fp32=fp32,
                                           int8={"iou": 0.75 - 0.004, "bf": 0.74 - 0.009})
    assert check["passed"] and check["labelled"]["miou_delta"] == -0.004
    assert check["agreement"]["passed"] is False  # the build's own check stays recorded
    assert resolve_precision("u2netp", store, provider=CPU) == "u2netp-int8"
    check = quantize.record_labelled_check(store, "u2netp", label="dev", images=100, fp32=fp32,
                                           int8={"iou": 0.75 - 0.006, "bf": 0.74})
    assert not check["passed"] and "mean_iou_vs_float" in check["agreement"]
    assert resolve_precision("u2netp", store, provider=CPU) == "u2netp"


def test_a_byte_identical_rebuild_takes_the_labelled_check_recorded_for_its_sha256(built, tmp_path, monkeypatch):
    """A build that reproduces a file measured on a labelled set records that measurement (so a container
    build without eval/dev gets the same ``auto`` decision); any other file keeps its agreement check."""
    store, recipe = built
    measured = {"label": "dev", "images": 100, "fp32": {"iou": 0.70, "bf": 0.69}, "int8": {"iou": 0.69, "bf": 0.69}}
    monkeypatch.setattr(quantize, "RECORDED_CHECKS", {recipe["sha256"]: {cpu.int8_kernels(): measured}})
    shutil.copyfile(store.directory / "u2netp.onnx", tmp_path / "u2netp.onnx")
    again = quantize.build("u2netp", store=ModelStore(tmp_path), log=lambda *_: None, **BUILD)
    check = again["quality_check"]
    assert again["sha256"] == recipe["sha256"]
    assert check["labelled"]["miou_delta"] == -0.01 and "sha256" in check["labelled"]["source"]
    assert not check["passed"]  # -0.01 mIoU is outside the 0.005 tolerance, whatever the agreement said
    assert check["agreement"]["mean_iou_vs_float"] == recipe["quality_check"]["mean_iou_vs_float"]
    assert quantize.read_recipe(ModelStore(tmp_path), "u2netp")["quality_check"] == check
    assert quantize.recorded_check("0" * 64, recipe["quality_check"]) is None
    # A measurement recorded for another CPU family's int8 kernels is not this CPU's check.
    assert quantize.recorded_check(recipe["sha256"], recipe["quality_check"], kernels="another-family") is None


def test_int8_kernel_families():
    assert cpu.int8_kernels({"avx2", "avx512f", "avx512_vnni"}, "x86_64") == "vnni"
    assert cpu.int8_kernels({"avx2", "avx_vnni"}, "x86_64") == "vnni"
    assert cpu.int8_kernels({"avx2", "fma"}, "x86_64") == "u8s8-saturating"
    assert cpu.int8_kernels({"avx2", "avx512f", "avx512bw"}, "x86_64") == "u8s8-saturating"
    assert cpu.int8_kernels({"sse4_2"}, "x86_64") == "x86-sse"
    assert cpu.int8_kernels(set(), "aarch64") == "aarch64"
    # 7-bit weights only where the u8s8 kernels saturate
    assert quantize.default_reduce_range("u8s8-saturating") and not quantize.default_reduce_range("vnni")
    assert not quantize.default_reduce_range("aarch64")


def test_auto_precision_ignores_a_check_measured_on_other_int8_kernels(built, tmp_path, monkeypatch):
    """The same int8 file loses accuracy where ONNX Runtime's u8s8 kernels saturate (AVX2 without VNNI),
    so a passed check counts only on the kernel family it was measured on; an explicit int8 still runs."""
    monkeypatch.setenv("CLEARCUT_MODEL_PRECISION", "auto")
    store = _store_with_check(built, tmp_path, True)
    assert resolve_precision("u2netp", store, provider=CPU) == "u2netp-int8"
    other = "vnni" if cpu.int8_kernels() != "vnni" else "u8s8-saturating"
    monkeypatch.setattr(cpu, "int8_kernels", lambda *a, **k: other)
    assert not store.has_int8("u2netp") and store.has_int8("u2netp", checked=False)
    assert resolve_precision("u2netp", store, provider=CPU) == "u2netp"
    monkeypatch.setenv("CLEARCUT_MODEL_PRECISION", "int8")
    assert resolve_precision("u2netp", store, provider=CPU) == "u2netp-int8"
    legacy = {k: v for k, v in store.recipe("u2netp")["quality_check"].items() if k != "int8_kernels"}
    assert not quantize.check_applies(legacy, kernels=other)  # a check from before the kernels were recorded
