"""/v2 end to end: Flask test client -> real SeaweedFS, SQLite, Redis, Celery worker and u2netp."""
import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from clearcut import accounts
from clearcut.db import sessionmaker_for, upgrade
from clearcut.db.models import Job, Usage
from tests.conftest import encode_image, synthetic_scene

SCENE, MASK = synthetic_scene(320, 240, radius=60)
PNG = encode_image(SCENE, "PNG")
JPEG = encode_image(SCENE, "JPEG", quality=95)


@pytest.fixture(scope="module")
def api(service_env, celery_worker, monkeypatch_module):
    for name, value in service_env.items():
        monkeypatch_module.setenv(name, value)
    monkeypatch_module.setenv("CLEARCUT_URL_ALLOWLIST", "127.0.0.1")
    monkeypatch_module.setenv("CLEARCUT_RATE_LIMIT_PER_MINUTE", "1000")
    upgrade(service_env["CLEARCUT_DATABASE_URL"])
    from app import create_app

    app = create_app(service_env)
    app.testing = True
    return app


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def new_key(api, name, mode="live"):
    db = sessionmaker_for(api.config["CLEARCUT_SETTINGS"]["CLEARCUT_DATABASE_URL"])
    with db.begin() as session:
        account = accounts.get_or_create_account(session, name)
        _, secret = accounts.create_key(session, account, mode=mode)
    return secret


@pytest.fixture(scope="module")
def key(api):
    return new_key(api, "api-tests")


@pytest.fixture()
def client(api):
    return api.test_client()


def alpha_iou(data: bytes) -> float:
    alpha = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))[:, :, 3] > 127
    return (alpha & MASK).sum() / (alpha | MASK).sum()


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"]["code"] == code and body["error"]["status"] == status
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    return body["error"]


def test_multipart_png_cutout_with_headers(client, key):
    r = client.post("/v2", headers={"x-api-key": key},
                    data={"image_file": (io.BytesIO(JPEG), "in.jpg"), "format": "png", "size": "full"})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.mimetype == "image/png" and alpha_iou(r.data) > 0.9
    assert r.headers["X-Width"] == "320" and r.headers["X-Height"] == "240"
    assert 55 <= int(r.headers["X-Foreground-Left"]) <= 105 and int(r.headers["X-Foreground-Width"]) > 100
    assert r.headers["X-Job-ID"].startswith("job_") and r.headers["X-Request-ID"].startswith("req_")
    assert int(r.headers["X-RateLimit-Remaining"]) < int(r.headers["X-RateLimit-Limit"])
    job = client.get(f"/v2/jobs/{r.headers['X-Job-ID']}", headers={"x-api-key": key}).get_json()
    assert job["status"] == "succeeded" and job["result"]["width"] == 320
    again = client.get(f"/v2/jobs/{job['id']}/result", headers={"x-api-key": key})
    assert again.data == r.data


@pytest.mark.parametrize("header", ["Bearer", "Token", "Api-Key"])
def test_authorization_schemes(client, key, header):
    r = client.get("/v2/account", headers={"Authorization": f"{header} {key}"})
    assert r.status_code == 200 and r.get_json()["api_key"]["valid"] is True


def test_account_shape_and_legacy_query_key(client, key):
    body = client.get(f"/v2/account?api_key={key}").get_json()
    assert body["status"] == "ok" and body["api_key"]["mode"] == "live"
    assert body["api_key"]["fingerprint"].startswith("fp_") and key not in json.dumps(body)
    assert set(body["account"]) >= {"email", "plan", "subscription_status", "billing_model", "usage_unit"}


def test_auth_errors(client, api):
    assert_error(client.post("/v2", data={"image_file": (io.BytesIO(PNG), "a.png")}), 401, "missing_api_key")
    assert_error(client.get("/v2/account", headers={"x-api-key": "cc_live_nope"}), 401, "invalid_api_key")
    revoked = new_key(api, "revoked-account")
    db = sessionmaker_for(api.config["CLEARCUT_SETTINGS"]["CLEARCUT_DATABASE_URL"])
    with db.begin() as session:
        accounts.revoke(session, accounts.fingerprint_of(revoked))
    assert_error(client.get("/v2/account", headers={"x-api-key": revoked}), 403, "revoked_api_key")


def test_json_base64_modes(client, key):
    b64 = base64.b64encode(PNG).decode()
    r = client.post("/v2", headers={"x-api-key": key}, json={"image_base64": "data:image/png;base64," + b64,
                                                              "format": "webp"})
    assert r.status_code == 200 and r.is_json
    body = r.get_json()
    out = base64.b64decode(body["image_base64"])
    assert Image.open(io.BytesIO(out)).format == "WEBP" and body["width"] == 320 and alpha_iou(out) > 0.9
    legacy = client.post("/v2", headers={"x-api-key": key}, json={"image": b64}).get_json()
    mask = Image.open(io.BytesIO(base64.b64decode(legacy["mask"])))
    assert mask.mode == "L" and (legacy["width"], legacy["height"]) == (320, 240)
    multipart = client.post("/v2", headers={"x-api-key": key}, data={"image_file_b64": b64, "format": "jpg"})
    assert multipart.status_code == 200 and multipart.mimetype == "image/jpeg"


def test_raw_body(client, key):
    r = client.post("/v2?format=gif", headers={"x-api-key": key, "Content-Type": "image/jpeg"}, data=JPEG)
    assert r.status_code == 200 and r.mimetype == "image/gif"


@pytest.mark.parametrize("value", ["abc", "aGVsbG8", "aGVs bG8=", "aGVsbG8=\n", "data:text/plain;base64,aGVsbG8=",
                                   "-_-_", "not base64 at all!"])
def test_invalid_base64(client, key, value):
    assert_error(client.post("/v2", headers={"x-api-key": key}, json={"image_base64": value}), 400,
                 "invalid_base64")


def test_double_encoded_and_valid_base64_non_image(client, key):
    twice = base64.b64encode(base64.b64encode(PNG)).decode()
    assert_error(client.post("/v2", headers={"x-api-key": key}, json={"image_base64": twice}), 400,
                 "invalid_base64")
    text = base64.b64encode(b"just some text, not an image").decode()
    assert_error(client.post("/v2", headers={"x-api-key": key}, json={"image_base64": text}), 422,
                 "invalid_image")


@pytest.mark.parametrize("value", ["#FFFF", "##FFFFFF", "FFFFF", "bluish", "255,255,255", "[255,255,255]"])
def test_spec_bg_color_failures(client, key, value):
    err = assert_error(client.post("/v2", headers={"x-api-key": key},
                                   data={"image_file": (io.BytesIO(PNG), "a.png"), "bg_color": value}),
                       400, "invalid_bg_color")
    assert "#FFFFFF" in err["message"] or "white" in err["message"]


@pytest.mark.parametrize("field,value,code", [("format", "svg", "invalid_format"), ("size", "huge", "invalid_size"),
                                              ("channels", "rgb", "invalid_channels"),
                                              ("crop", "sure", "invalid_boolean"), ("sharpen", "1", "unknown_option"),
                                              ("shadow", "1", "invalid_shadow")])
def test_option_errors_create_no_job(client, key, api, field, value, code):
    db = sessionmaker_for(api.config["CLEARCUT_SETTINGS"]["CLEARCUT_DATABASE_URL"])
    with db() as session:
        before = session.scalar(select(func.count()).select_from(Job))
    assert_error(client.post("/v2", headers={"x-api-key": key},
                             data={"image_file": (io.BytesIO(PNG), "a.png"), field: value}), 400, code)
    with db() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == before


def test_input_count_errors(client, key):
    assert_error(client.post("/v2", headers={"x-api-key": key}, data={"format": "png"}), 400, "missing_image")
    assert_error(client.post("/v2", headers={"x-api-key": key},
                             data={"image_file": (io.BytesIO(PNG), "a.png"),
                                   "image_base64": base64.b64encode(PNG).decode()}), 400, "multiple_images")
    assert_error(client.post("/v2", headers={"x-api-key": key, "Content-Type": "application/json"},
                             data="{not json"), 400, "invalid_json")
    assert_error(client.post("/v2", headers={"x-api-key": key, "Content-Type": "text/csv"}, data="a,b"), 415,
                 "unsupported_media_type")


def test_undecodable_and_bomb(client, key):
    assert_error(client.post("/v2", headers={"x-api-key": key},
                             data={"image_file": (io.BytesIO(b"GIF89a nope"), "a.gif")}), 422, "invalid_image")
    big = encode_image(Image.new("L", (1, 1)), "PNG")
    import struct
    import zlib
    data = bytearray(big)
    ihdr = struct.pack(">II", 30000, 30000) + bytes(data[24:29])
    data[16:29], data[29:33] = ihdr, struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    assert_error(client.post("/v2", headers={"x-api-key": key},
                             data={"image_file": (io.BytesIO(bytes(data)), "a.png")}), 413, "image_too_large")


def test_truncated_upload_fails_as_job_without_charge(client, key, api):
    r = client.post("/v2", headers={"x-api-key": key}, data={"image_file": (io.BytesIO(JPEG[:len(JPEG) // 2]), "t.jpg"),
                                                            "cache": "false"})
    err = assert_error(r, 422, "corrupt_image")
    db = sessionmaker_for(api.config["CLEARCUT_SETTINGS"]["CLEARCUT_DATABASE_URL"])
    with db() as session:
        job = session.scalar(select(Job).where(Job.request_id == err["request_id"]))
        assert job.status == "failed" and job.error_code == "corrupt_image"
        assert session.scalar(select(func.count()).select_from(Usage).where(Usage.job_id == job.id)) == 0


def test_cache_hit_skips_the_worker(client, key, api):
    payload = {"image_file": (io.BytesIO(encode_image(SCENE.rotate(90, expand=True), "PNG")), "r.png"),
               "format": "png", "crop": "true"}
    first = client.post("/v2", headers={"x-api-key": key}, data=dict(payload))
    payload["image_file"] = (io.BytesIO(encode_image(SCENE.rotate(90, expand=True), "PNG")), "r.png")
    second = client.post("/v2", headers={"x-api-key": key}, data=payload)
    assert first.status_code == second.status_code == 200 and first.data == second.data
    db = sessionmaker_for(api.config["CLEARCUT_SETTINGS"]["CLEARCUT_DATABASE_URL"])
    with db() as session:
        j1, j2 = (session.get(Job, r.headers["X-Job-ID"]) for r in (first, second))
    assert not j1.cache_hit and j1.attempts == 1
    assert j2.cache_hit and j2.attempts == 0  # no worker ever claimed it


def test_tenant_isolation(client, key, api):
    other = new_key(api, "other-tenant")
    r = client.post("/v2", headers={"x-api-key": key}, data={"image_file": (io.BytesIO(PNG), "a.png")})
    job_id = r.headers["X-Job-ID"]
    assert_error(client.get(f"/v2/jobs/{job_id}", headers={"x-api-key": other}), 404, "job_not_found")
    assert_error(client.get(f"/v2/jobs/{job_id}/result", headers={"x-api-key": other}), 404, "job_not_found")


class _Images(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server API
        if self.path == "/redirect-private":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.end_headers()
            return
        body = PNG if self.path == "/scene.png" else b"<html>not an image</html>"
        self.send_response(200 if self.path != "/missing" else 404)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def image_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_image_url(client, key, image_server):
    r = client.post("/v2", headers={"x-api-key": key}, json={"image_url": f"{image_server}/scene.png",
                                                              "format": "png"}, )
    assert r.status_code == 200 and alpha_iou(base64.b64decode(r.get_json()["image_base64"])) > 0.9
    assert_error(client.post("/v2", headers={"x-api-key": key}, data={"image_url": f"{image_server}/page"}),
                 422, "invalid_image")
    assert_error(client.post("/v2", headers={"x-api-key": key}, data={"image_url": f"{image_server}/missing"}),
                 400, "image_url_unreachable")


@pytest.mark.parametrize("url", ["http://localhost:9/x.png", "http://10.0.0.1/x.png", "http://169.254.169.254/",
                                 "http://[::1]/x.png", "http://[::ffff:127.0.0.1]/x.png", "http://2130706433/x.png",
                                 "http://0x7f000001/x.png", "http://0177.0.0.1/x.png", "file:///etc/passwd",
                                 "gopher://127.0.0.1/", "http://user:pw@example.com/x.png"])
def test_ssrf_is_refused(client, key, url, monkeypatch):
    monkeypatch.setenv("CLEARCUT_URL_ALLOWLIST", "")
    err = assert_error(client.post("/v2", headers={"x-api-key": key}, data={"image_url": url}), 400,
                       "url_not_allowed")
    assert "not allowed" in err["message"] or "only http" in err["message"]


def test_redirect_to_private_address_is_refused(client, key, image_server, monkeypatch):
    # The first hop (127.0.0.1) is allow-listed; the redirect target (metadata address) is not.
    err = assert_error(client.post("/v2", headers={"x-api-key": key},
                                   data={"image_url": f"{image_server}/redirect-private"}), 400, "url_not_allowed")
    assert err


def test_upload_cap(client, key, monkeypatch):
    monkeypatch.setenv("CLEARCUT_MAX_UPLOAD_MB", "0.01")
    err = assert_error(client.post("/v2", headers={"x-api-key": key},
                                   data={"image_file": (io.BytesIO(b"\xff\xd8\xff" + b"0" * 20000), "big.jpg")}),
                       413, "image_too_large")
    assert "MB" in err["message"]


def test_sync_timeout_answers_202_and_the_job_finishes(client, key, monkeypatch):
    monkeypatch.setenv("CLEARCUT_SYNC_TIMEOUT_S", "0.001")
    image = encode_image(SCENE.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG")
    r = client.post("/v2", headers={"x-api-key": key},
                    data={"image_file": (io.BytesIO(image), "a.png"), "cache": "false"})
    assert r.status_code == 202, r.get_data(as_text=True)
    body = r.get_json()
    assert body["status"] in ("queued", "processing") and body["id"] == r.headers["X-Job-ID"]
    assert r.headers["Location"].endswith(f"/v2/jobs/{body['id']}")
    import time
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.get(f"/v2/jobs/{body['id']}", headers={"x-api-key": key}).get_json()
        if status["status"] == "succeeded":
            break
        time.sleep(0.2)
    assert status["status"] == "succeeded" and status["result_url"].endswith("/result")
    result = client.get(f"/v2/jobs/{body['id']}/result", headers={"x-api-key": key})
    assert result.status_code == 200 and result.headers["X-Width"] == "320"


def test_rate_limit(client, api):
    limited = new_key(api, "rate-limited")
    settings = api.config["CLEARCUT_SETTINGS"]
    previous = settings.get("CLEARCUT_RATE_LIMIT_PER_MINUTE")
    settings["CLEARCUT_RATE_LIMIT_PER_MINUTE"] = "2"
    try:
        responses = [client.get("/v2/account", headers={"x-api-key": limited}) for _ in range(3)]
    finally:
        settings["CLEARCUT_RATE_LIMIT_PER_MINUTE"] = previous or "1000"
    assert [r.status_code for r in responses[:2]] == [200, 200]
    assert responses[0].headers["X-RateLimit-Limit"] == "2" and responses[1].headers["X-RateLimit-Remaining"] == "0"
    assert_error(responses[2], 429, "rate_limited")
    assert 1 <= int(responses[2].headers["Retry-After"]) <= 60
    assert responses[2].headers["X-RateLimit-Remaining"] == "0"


def test_api_process_never_loads_onnxruntime(service_env):
    import subprocess
    import sys

    code = ("import sys; from app import create_app; c = create_app().test_client(); "
            "c.get('/v2/account'); c.post('/v2', data={'format': 'png'}); "
            "print('onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__('os').environ, **service_env})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
