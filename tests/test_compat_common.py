"""Shared live-server fixtures for the vendor compatibility tests, and tests of the one field mapping.

The compat tests drive a real HTTP server (werkzeug in a thread on 127.0.0.1) with third-party client
libraries, over the real SQLite, Redis, SeaweedFS and Celery worker with u2netp.
"""
from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from clearcut import accounts
from clearcut.db import sessionmaker_for, upgrade
from clearcut.db.models import Job
from clearcut.errors import InvalidOption
from tests.async_support import serve_images
from tests.conftest import ROOT, encode_image, synthetic_scene

SCENE, MASK = synthetic_scene(320, 240, radius=60)
PNG = encode_image(SCENE, "PNG")
JPEG = encode_image(SCENE, "JPEG", quality=95)
PPM = encode_image(SCENE, "PPM")  # a real image in a format Clearcut does not take (415)
BACKDROP = encode_image(Image.new("RGB", (64, 48), (0, 200, 0)), "PNG")


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def compat_app(service_env, celery_worker, monkeypatch_module):
    for name, value in service_env.items():
        monkeypatch_module.setenv(name, value)
    monkeypatch_module.setenv("CLEARCUT_URL_ALLOWLIST", "127.0.0.1")
    monkeypatch_module.setenv("CLEARCUT_RATE_LIMIT_PER_MINUTE", "1000")
    upgrade(service_env["CLEARCUT_DATABASE_URL"])
    from app import create_app

    return create_app(service_env)


@pytest.fixture(scope="module")
def server(compat_app):
    """The app on a real socket, so client libraries talk HTTP to it exactly as to the vendor."""
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, compat_app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(5)


def new_key(app, name: str) -> str:
    with _db(app).begin() as session:
        account = accounts.get_or_create_account(session, name)
        _, secret = accounts.create_key(session, account)
    return secret


def revoked_key(app, name: str) -> str:
    secret = new_key(app, name)
    with _db(app).begin() as session:
        accounts.revoke(session, accounts.fingerprint_of(secret))
    return secret


def _db(app):
    return sessionmaker_for(app.config["CLEARCUT_SETTINGS"]["CLEARCUT_DATABASE_URL"])


def job_row(app, job_id: str) -> Job:
    with _db(app)() as session:
        return session.get(Job, job_id)


def job_count(app) -> int:
    with _db(app)() as session:
        return session.scalar(select(func.count()).select_from(Job))


def latest_job(app, source: str) -> Job:
    with _db(app)() as session:
        return session.scalar(select(Job).where(Job.source == source).order_by(Job.created_at.desc()).limit(1))


def alpha_iou(image: Image.Image) -> float:
    alpha = np.asarray(image.convert("RGBA"))[:, :, 3] > 127
    return (alpha & MASK).sum() / (alpha | MASK).sum()


def mask_iou(mask: Image.Image) -> float:
    alpha = np.asarray(mask.convert("L")) > 127
    return (alpha & MASK).sum() / (alpha | MASK).sum()


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


class rate_limited:
    """Temporarily lower the per-key rate limit (read per request from the app's settings)."""

    def __init__(self, app, limit: int):
        self.settings, self.limit = app.config["CLEARCUT_SETTINGS"], limit

    def __enter__(self):
        self.previous = self.settings.get("CLEARCUT_RATE_LIMIT_PER_MINUTE")
        self.settings["CLEARCUT_RATE_LIMIT_PER_MINUTE"] = str(self.limit)

    def __exit__(self, *exc):
        self.settings["CLEARCUT_RATE_LIMIT_PER_MINUTE"] = self.previous or "1000"


@pytest.fixture(scope="module")
def image_server():
    yield from serve_images({"/scene.png": PNG, "/green.png": BACKDROP})


# -- the mapping itself (no services needed) ------------------------------------------------------------

def test_removebg_values_map_onto_clearcut_options():
    from app.compat.fields import map_fields

    mapped = map_fields("removebg", {"size": "regular", "format": "jpg", "bg_color": "fff", "crop": "true",
                                     "crop_margin": "10%", "type": "product", "scale": "original"})
    assert mapped.options.size == "preview" and mapped.options.format == "jpg"
    assert mapped.options.bg_color == (255, 255, 255) and mapped.options.crop
    assert mapped.options.crop_margin.relative and mapped.options.crop_margin.top == pytest.approx(0.1)
    assert mapped.extras.type_hint == "product" and mapped.extras.credits == 0.25
    assert map_fields("removebg", {"size": "4k"}).options.size == "full"
    assert map_fields("removebg", {"size": "hd"}).extras.credits == 1.0
    semi = map_fields("removebg", {"bg_color": "81d4fa80"})
    assert semi.extras.bg_rgba == (0x81, 0xD4, 0xFA, 0x80) and semi.options.bg_color is None
    assert map_fields("removebg", {"bg_color": "#81d4faff"}).options.bg_color == (0x81, 0xD4, 0xFA)
    assert map_fields("removebg", {"format": "zip"}).extras.zip


@pytest.mark.parametrize("fields,expected", [
    ({"scale": "original"}, {"scale": None, "position": None}),
    ({"scale": "50%"}, {"scale": 50.0, "position": None}),  # Clearcut centres a scaled subject by default
    ({"scale": "80", "position": "original"}, {"scale": 80.0, "position": "original"}),
    ({"scale": "100%", "position": "0% 100%"}, {"scale": 100.0, "position": "0% 100%"}),
    ({"position": "center"}, {"position": None}),  # neither scale nor crop: the subject stays put
    ({"position": "25%", "crop": "true"}, {"position": "25% 25%", "crop": True}),
    ({"position": "original", "crop": "true"}, {"position": None}),
    ({"add_shadow": "true"}, {"shadow": "contact", "shadow_opacity": None}),  # remove.bg's default type: car
    ({"add_shadow": "1", "shadow_type": "3D", "shadow_opacity": "35"}, {"shadow": "contact", "shadow_opacity": 35.0}),
    ({"add_shadow": True, "shadow_type": "drop"}, {"shadow": "drop"}),
    ({"add_shadow": "false"}, {"shadow": "none"}),
    ({"roi": "0% 0% 100% 100%"}, {"roi": None}),
    ({"roi": "10px 20px 300px 200px"}, {"roi": "10px 20px 300px 200px"}),
    ({"semitransparency": "false"}, {"semitransparency": False}),
])
def test_removebg_layout_and_matte_fields_map_onto_options(fields, expected):
    from app.compat.fields import map_fields

    options = map_fields("removebg", fields).options
    assert {name: getattr(options, name) for name in expected} == expected


def test_slazzer_names_map_and_errors_name_the_vendor_field():
    from app.compat.fields import map_fields

    options = map_fields("slazzer", {"bg_color_code": "#00ff00", "channel": "rgba", "crop": "1"}).options
    assert options.bg_color == (0, 255, 0) and options.crop
    with pytest.raises(InvalidOption) as err:
        map_fields("slazzer", {"channel": "rgb"})
    assert err.value.code == "invalid_channels" and err.value.message.startswith("channel must be")


@pytest.mark.parametrize("vendor,name,value,code", [
    ("removebg", "scale", "5%", "invalid_scale"),
    ("removebg", "position", "top", "invalid_position"),
    ("removebg", "roi", "10% 10% 90%", "invalid_roi"),
    ("removebg", "add_shadow", "maybe", "invalid_boolean"),
    ("removebg", "shadow_type", "drop", "invalid_shadow_type"),  # without add_shadow=true
    ("removebg", "shadow_opacity", "40", "invalid_shadow_opacity"),
    ("removebg", "semitransparency", "sometimes", "invalid_semitransparency"),
    ("removebg", "size", "huge", "invalid_size"),
    ("removebg", "type", "spaceship", "invalid_type"),
    ("removebg", "bg_color_code", "fff", "mixed_vendor_fields"),
    ("slazzer", "bg_color", "fff", "mixed_vendor_fields"),
    ("withoutbg", "format", "png", "mixed_vendor_fields"),
    ("clipdrop", "shadow", "1", "unknown_option"),
])
def test_unsupported_foreign_and_unknown_fields_are_refused(vendor, name, value, code):
    from app.compat.fields import map_fields

    with pytest.raises(InvalidOption) as err:
        map_fields(vendor, {name: value})
    assert err.value.code == code and name in err.value.message


def test_mixed_field_errors_say_what_to_send_instead():
    from app.compat.fields import foreign_field_error

    assert foreign_field_error("slazzer", "bg_color").details["use"] == "bg_color_code"
    assert foreign_field_error("removebg", "source_image_file").details["use"] == "image_file"
    assert foreign_field_error("withoutbg", "image_file_b64").details["use"] == "image_base64"
    assert foreign_field_error("clipdrop", "format").details["use"] is None


def test_docs_table_lists_every_mapped_field():
    from app.compat.fields import table_rows

    doc = (ROOT / "docs" / "compat.md").read_text()
    for vendor, name, _, _ in table_rows():
        assert f"`{name}`" in doc, f"docs/compat.md does not document {vendor} field {name}"
    assert Path(ROOT / "tests" / "js" / "package-lock.json").exists()
