"""The ``clearcut`` command end to end, as a subprocess (real model, real files)."""
import io
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.conftest import ROOT, encode_image, synthetic_scene


def clearcut(*args, stdin: bytes | None = None, model_dir=None):
    env = {**os.environ, "CLEARCUT_MODEL_DIR": str(model_dir), "CLEARCUT_DEFAULT_MODEL": "u2netp"}
    return subprocess.run([sys.executable, "-m", "clearcut.cli", *args], input=stdin, capture_output=True,
                          env=env, cwd=ROOT, timeout=300)


def test_folder_tree_with_a_broken_file(tmp_path, model_dir):
    image, mask = synthetic_scene(320, 240, radius=60)
    (tmp_path / "in" / "shoes").mkdir(parents=True)
    (tmp_path / "in" / "a.jpg").write_bytes(encode_image(image, "JPEG", quality=95))
    (tmp_path / "in" / "shoes" / "b.png").write_bytes(encode_image(image, "PNG"))
    (tmp_path / "in" / "shoes" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "in" / "notes.txt").write_text("not an image, skipped")
    result = clearcut("remove", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "2", model_dir=model_dir)
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "2 succeeded, 1 failed" in stderr and "broken.jpg: corrupt_image" in stderr
    out_a = Image.open(tmp_path / "out" / "in" / "a.png")
    out_b = Image.open(tmp_path / "out" / "in" / "shoes" / "b.png")
    for out in (out_a, out_b):
        alpha = np.asarray(out)[:, :, 3] > 127
        assert out.mode == "RGBA" and ((alpha & mask).sum() / (alpha | mask).sum()) > 0.9
    assert not (tmp_path / "out" / "in" / "notes.png").exists()


def test_stdin_to_stdout_with_options(model_dir):
    image, _ = synthetic_scene(320, 240, radius=60)
    result = clearcut("remove", "-", "--format", "jpg", "--bg-color", "black", "--crop", stdin=encode_image(image),
                      model_dir=model_dir)
    assert result.returncode == 0, result.stderr
    out = Image.open(io.BytesIO(result.stdout))
    assert out.format == "JPEG" and 115 <= out.size[0] <= 135
    assert np.asarray(out)[0, 0].max() < 30  # black corner outside the disc


def test_single_file_default_name_and_bad_option(tmp_path, model_dir):
    image, _ = synthetic_scene(320, 240, radius=60)
    source = tmp_path / "photo.png"
    source.write_bytes(encode_image(image))
    ok = clearcut("remove", str(source), "--channels", "alpha", model_dir=model_dir)
    assert ok.returncode == 0 and Image.open(tmp_path / "photo.cutout.png").mode == "L"
    bad = clearcut("remove", str(source), "--bg-color", "bluish", model_dir=model_dir)
    assert bad.returncode == 2 and b"invalid_bg_color" in bad.stderr


def test_models_list_and_config(model_dir):
    listing = clearcut("models", "list", model_dir=model_dir)
    assert listing.returncode == 0 and b"u2netp" in listing.stdout and b"isnet-general" in listing.stdout
    table = clearcut("config", model_dir=model_dir)
    assert b"CLEARCUT_MAX_MEGAPIXELS" in table.stdout


def test_summary_lists_the_cutouts_to_review(tmp_path, model_dir):
    image, _ = synthetic_scene(320, 240, radius=60)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "disc.png").write_bytes(encode_image(image))
    (tmp_path / "in" / "blank.png").write_bytes(encode_image(Image.new("RGB", (320, 240), (230, 230, 230))))
    listing = tmp_path / "review.txt"
    result = clearcut("remove", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--review-below", "0.5",
                      "--review-list", str(listing), model_dir=model_dir)
    assert result.returncode == 0, result.stderr
    stderr = result.stderr.decode()
    assert "2 succeeded, 0 failed, 1 to review (confidence below 0.5)" in stderr
    assert f"review: {tmp_path / 'in' / 'blank.png'} (confidence 0.00)" in stderr and "disc.png (conf" not in stderr
    assert listing.read_text() == f"{tmp_path / 'in' / 'blank.png'}\n"
    bad = clearcut("remove", str(tmp_path / "in"), "--review-below", "high", model_dir=model_dir)
    assert bad.returncode == 2 and b"invalid_review_below" in bad.stderr


def _subject_box(image: Image.Image) -> tuple[int, int, int, int]:
    """The box of pixels that differ from pure white (the layout tests flatten onto white)."""
    rows, cols = np.nonzero((np.asarray(image.convert("RGB")) != 255).any(axis=2))
    return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def test_layout_preset_and_flags_that_override_it(tmp_path, model_dir):
    image, _ = synthetic_scene(320, 240, radius=60)
    source = tmp_path / "photo.png"
    source.write_bytes(encode_image(image))
    preset = clearcut("remove", str(source), "--layout", "amazon", "-o", str(tmp_path / "amazon.png"),
                      model_dir=model_dir)
    assert preset.returncode == 0, preset.stderr
    out = Image.open(tmp_path / "amazon.png")
    assert out.size == (2000, 2000) and out.mode == "RGB"
    left, top, right, bottom = _subject_box(out)
    assert abs(max(right - left, bottom - top) - 1800) <= 18  # amazon: scale 90 % of the canvas
    assert abs((left + right) / 2 - 1000) <= 1 and abs((top + bottom) / 2 - 1000) <= 1
    pixels = np.asarray(out)
    assert (pixels[:top] == 255).all() and (pixels[bottom:] == 255).all()  # exact white outside the subject

    flags = clearcut("remove", str(source), "--layout", "amazon", "--canvas", "800x600", "--scale", "50",
                     "--position", "25% 50%", "--dpi", "300", "-o", str(tmp_path / "custom.png"), model_dir=model_dir)
    assert flags.returncode == 0, flags.stderr
    out = Image.open(tmp_path / "custom.png")
    assert out.size == (800, 600) and round(out.info["dpi"][0]) == 300
    left, top, right, bottom = _subject_box(out)
    assert abs(max(right - left, bottom - top) - 300) <= 3  # 50 % of the shorter side it fits
    assert left < 800 // 2 - (right - left) // 2  # moved left of centre by position 25 %

    bad = clearcut("remove", str(source), "--shadow", "spooky", model_dir=model_dir)
    assert bad.returncode == 2 and b"invalid_shadow" in bad.stderr

    margin = clearcut("remove", str(source), "--canvas", "1000x1000", "--margin", "100px", "--bg-color", "white",
                      "-o", str(tmp_path / "margin.png"), model_dir=model_dir)
    assert margin.returncode == 0, margin.stderr
    left, top, right, bottom = _subject_box(Image.open(tmp_path / "margin.png"))
    assert abs(max(right - left, bottom - top) - 800) <= 8 and min(left, top) >= 99  # fitted inside the margin
    whole = clearcut("remove", str(source), "--keep-background", "--canvas", "1000x1000", "--margin", "100px",
                     "--max-width", "500", "-o", str(tmp_path / "whole.png"), model_dir=model_dir)
    assert whole.returncode == 0, whole.stderr
    out = np.asarray(Image.open(tmp_path / "whole.png").convert("RGBA"))
    assert out.shape[:2] == (500, 500)
    # the canvas shrank to 500 px, the 100 px margin stayed: the whole photo, opaque, 300 x 225 in the middle
    rows, cols = np.nonzero(out[:, :, 3] == 255)
    assert (cols.min(), cols.max() + 1) == (100, 400) and abs((rows.max() + 1 - rows.min()) - 225) <= 1
    assert (out[rows.min():rows.max() + 1, 100:400, 3] == 255).all() and (out[:, :100, 3] == 0).all()

    region = clearcut("remove", str(source), "--roi", "0% 0% 50% 100%", "--hard-edges", "-o", str(tmp_path / "roi.png"),
                      model_dir=model_dir)
    assert region.returncode == 0, region.stderr
    alpha = np.asarray(Image.open(tmp_path / "roi.png").convert("RGBA"))[:, :, 3]
    assert (alpha[:, 160:] == 0).all() and alpha[:, :160].any()  # nothing outside the region
    assert set(np.unique(alpha)) <= {0, 255}  # a hard matte
