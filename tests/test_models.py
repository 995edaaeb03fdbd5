"""Model store: verified fetches, checksum failures, custom models, the listing."""
import hashlib
import shutil

import numpy as np
import pytest

from clearcut.errors import ChecksumMismatch, ModelError
from clearcut.models import registry
from clearcut.models.session import SegmentationSession
from clearcut.models.store import ModelStore, _verified


def _custom(monkeypatch, path, sha256, name="mine"):
    monkeypatch.setenv("CLEARCUT_CUSTOM_MODELS", f"{name}={path}|{sha256}|320|imagenet")


def test_builtin_u2netp_is_verified(model_dir):
    store = ModelStore(model_dir)
    path = store.path("u2netp")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == registry.BUILTIN["u2netp"].sha256


def test_custom_local_model_is_copied_and_verified(model_dir, tmp_path, monkeypatch):
    source = model_dir / "u2netp.onnx"
    _custom(monkeypatch, source, registry.BUILTIN["u2netp"].sha256)
    store = ModelStore(tmp_path / "store")
    path = store.fetch("mine")
    assert path.read_bytes() == source.read_bytes()
    session = SegmentationSession(registry.spec("mine"), path, threads=1)
    matte = session.predict(np.zeros((200, 320, 3), np.uint8))
    assert matte.shape == (200, 320) and matte.dtype == np.float32 and 0 <= matte.min() <= matte.max() <= 1


def test_checksum_mismatch_on_fetch_leaves_nothing_behind(model_dir, tmp_path, monkeypatch):
    _custom(monkeypatch, model_dir / "u2netp.onnx", "0" * 64)
    store = ModelStore(tmp_path)
    with pytest.raises(ChecksumMismatch) as err:
        store.fetch("mine")
    assert err.value.details["expected"] == "0" * 64
    assert "clearcut models fetch mine" in err.value.message
    assert list(tmp_path.iterdir()) == []


def test_tampered_cache_is_refused(model_dir, tmp_path, monkeypatch):
    copy = tmp_path / "u2netp.onnx"
    shutil.copyfile(model_dir / "u2netp.onnx", copy)
    with open(copy, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    _verified.discard((str(copy), registry.BUILTIN["u2netp"].sha256))
    with pytest.raises(ChecksumMismatch):
        ModelStore(tmp_path).path("u2netp")


def test_missing_model_says_how_to_fetch(tmp_path):
    with pytest.raises(ModelError) as err:
        ModelStore(tmp_path).path("u2net")
    assert "clearcut models fetch u2net" in err.value.message


def test_unknown_model_and_bad_custom_declarations(monkeypatch):
    with pytest.raises(ModelError) as err:
        registry.spec("nope")
    assert err.value.code == "unknown_model"
    monkeypatch.setenv("CLEARCUT_CUSTOM_MODELS", "bad=entry")
    with pytest.raises(ModelError):
        registry.all_specs()
    monkeypatch.setenv("CLEARCUT_CUSTOM_MODELS", f"x=/a.onnx|{'a' * 64}|320|weird")
    with pytest.raises(ModelError, match="normalisation"):
        registry.all_specs()


def test_describe_lists_every_model(model_dir):
    rows = {r["name"]: r for r in ModelStore(model_dir).describe()}
    assert set(registry.BUILTIN) <= set(rows)
    assert rows["u2netp"]["cached"] and rows["u2netp"]["input_size"] == 320
    assert rows["isnet-general"]["normalisation"] == "isnet" and rows["isnet-general"]["input_size"] == 1024
