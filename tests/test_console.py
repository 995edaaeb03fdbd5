"""The web console in a real browser: Playwright drives Debian's Chromium (/usr/bin/chromium, no browser
download) against a live stack — the Flask app under werkzeug in a thread, a real Celery worker on the
cpu, batch and webhooks queues, SQLite, SeaweedFS, Redis and u2netp.

Screenshots of every page (desktop and phone width) go to $CLEARCUT_TEST_ARTIFACTS (default: a pytest
temporary directory)."""
from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from sqlalchemy import func, select

from clearcut.db.models import Account, Job, Usage
from tests import async_support as support
from tests.conftest import encode_image, synthetic_scene

pytestmark = pytest.mark.timeout(300)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SCENE, MASK = synthetic_scene(240, 180, radius=50)
SCENE_PNG = encode_image(SCENE, "PNG")
ACCOUNT = "console-tests"
# Chromium logs every 4xx answer of fetch() as a console error; a flow that expects one lists it here.
UNAUTHORIZED = re.compile(r"Failed to load resource: the server responded with a status of 401")


def _chromium_available() -> bool:
    """True when /usr/bin/chromium exists, installing Debian's package first if we can (CI does it in .ci/run)."""
    if os.path.exists(CHROMIUM):
        return True
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in ([apt, "install", "-y", "-qq", "chromium"], [apt, "update", "-qq"],
                     [apt, "install", "-y", "-qq", "chromium"]):
            try:
                subprocess.run(argv, env=env, capture_output=True, timeout=600, check=False)
            except (OSError, subprocess.TimeoutExpired):
                break
            if os.path.exists(CHROMIUM):
                return True
    return os.path.exists(CHROMIUM)


class ImageHost(support.Quiet):
    """/img/N.png serves an image; /broken/N.png is 404 until ``fixed`` is set (the cause gets fixed)."""
    fixed = False
    images = {n: support.scene_png(96, 64, 14 + 2 * n) for n in range(8)}

    def do_GET(self):  # noqa: N802 - http.server API
        kind, _, rest = self.path.strip("/").partition("/")
        n = int(rest.split(".")[0]) % 8
        if kind == "img" or type(self).fixed:
            status, body, ctype = 200, self.images[n], "image/png"
        else:
            status, body, ctype = 404, b"gone", "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Receiver(support.Recorder):
    received: list = []


@pytest.fixture(scope="module")
def sync_playwright_api():
    if not _chromium_available():
        pytest.skip(f"{CHROMIUM} is absent and Debian's chromium package could not be installed "
                    "(apt-get install chromium); the console's browser tests need it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as api:
        yield api


@pytest.fixture(scope="module")
def browser(sync_playwright_api):
    browser = sync_playwright_api.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def env(service_env, model_dir):
    mp = pytest.MonkeyPatch()
    for name, value in {**service_env, **support.FAST}.items():
        mp.setenv(name, value)
    yield service_env
    mp.undo()


@pytest.fixture(scope="module")
def live(env, tmp_path_factory):
    """The app served over real HTTP on 127.0.0.1 (a random port) plus a worker for every queue."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):  # the app logs its own access lines
            pass

    app = support.make_app(env)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with support.worker(env, tmp_path_factory.mktemp("console-worker")):
        yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def servers():
    yield from support.serving(ImageHost, Receiver)


@pytest.fixture(scope="module")
def key(live, env):
    return support.new_key(env, ACCOUNT)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    configured = os.environ.get("CLEARCUT_TEST_ARTIFACTS")
    path = Path(configured) / "console" if configured else tmp_path_factory.mktemp("console-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Tab:
    """A browser page with its console errors, uncaught exceptions and request URLs recorded."""

    def __init__(self, page, base, artifacts):
        self.page, self.base, self.artifacts = page, base, artifacts
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.allowed: list[re.Pattern] = []
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("request", lambda request: self.urls.append(request.url))

    def goto(self, fragment: str = ""):
        self.page.goto(f"{self.base}/console{fragment}")

    def sign_in(self, key: str):
        self.goto("#/try")
        self.page.fill("#api-key", key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("navigation", name="Console sections").wait_for()

    def nav(self, section: str):
        return self.page.get_by_role("navigation", name="Console sections").get_by_role("link", name=section)

    def shot(self, name: str, *, phone: bool = True):
        self.page.screenshot(path=str(self.artifacts / f"{name}-desktop.png"), full_page=True)
        if phone:
            self.page.set_viewport_size(PHONE)
            self.page.wait_for_timeout(150)
            self.page.screenshot(path=str(self.artifacts / f"{name}-phone.png"), full_page=True)
            overflow = self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{name}: the page is {overflow}px wider than a phone screen"
            self.page.set_viewport_size(DESKTOP)

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture()
def tab(browser, live, artifacts):
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    tab = Tab(page, live, artifacts)
    yield tab
    context.close()
    assert tab.unexpected_errors() == [], f"console errors: {tab.unexpected_errors()}"


def _api(live, key, method, path, **kwargs):
    return requests.request(method, f"{live}{path}", headers={"x-api-key": key, **kwargs.pop("headers", {})},
                            timeout=60, **kwargs)


def _alpha_iou(data: bytes, mask) -> float:
    alpha = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))[:, :, 3] > 127
    return (alpha & mask).sum() / (alpha | mask).sum()


# --- flows -------------------------------------------------------------------------------------------

def test_console_is_served_offline_with_a_strict_policy(live):
    page = requests.get(f"{live}/console", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "unsafe" not in policy
    assert page.headers["Referrer-Policy"] == "no-referrer" and 'type="module"' in page.text
    slash = requests.get(f"{live}/console/", allow_redirects=False, timeout=10)
    assert slash.status_code == 308 and slash.headers["Location"].endswith("/console")
    static = Path(__file__).parent.parent / "app" / "console" / "static"
    for path in static.rglob("*"):
        if path.is_file():  # nothing from a CDN: no other host (bar the SVG namespace and placeholder text)
            text = path.read_text()
            assert set(re.findall(r"https?://([\w.-]+)", text)) <= {"www.w3.org", "example.com"}, path
            assert all(m.startswith(".") for m in re.findall(r"\bfrom \"([^\"]+)\"", text)), path
            assert "@import" not in text and "url(" not in text, path
        if path.suffix in (".js", ".css", ".svg"):
            served = requests.get(f"{live}/console/static/{path.relative_to(static).as_posix()}", timeout=10)
            assert served.status_code == 200 and served.content == path.read_bytes()


def test_bad_key_shows_a_clear_error_and_nothing_leaks(tab, key):
    page = tab.page
    tab.goto()
    page.get_by_label("API key").wait_for()
    assert page.evaluate("document.activeElement.id") == "api-key"  # keyboard users land on the key field
    tab.shot("signin")
    page.keyboard.press("Enter")
    assert "Enter an API key" in page.get_by_role("alert").inner_text()
    tab.allowed.append(UNAUTHORIZED)  # the 401 below is the expected answer to a wrong key
    page.fill("#api-key", "cc_live_not-a-real-key")
    page.keyboard.press("Enter")
    alert = page.get_by_role("alert")
    alert.wait_for()
    text = alert.inner_text()
    assert "Sign-in failed" in text and "not valid" in text and "invalid_api_key" in text and "HTTP 401" in text
    assert re.search(r"request req_[0-9a-f]+", text)
    assert page.get_attribute("#api-key", "aria-invalid") == "true"
    assert page.evaluate("sessionStorage.length") == 0
    assert page.get_by_role("navigation", name="Console sections").is_hidden()
    tab.shot("signin-error")
    assert all("not-a-real-key" not in url for url in tab.urls)
    assert any(UNAUTHORIZED.search(e) for e in tab.errors) or not tab.errors

    # the right key signs in; it lives in sessionStorage and travels only in the x-api-key header
    page.fill("#api-key", key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Try a cutout").wait_for()
    assert page.evaluate("Object.values(sessionStorage)") == [key]
    assert ACCOUNT in page.inner_text("#account-name")
    assert all(key not in url for url in tab.urls)
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").wait_for()
    assert page.evaluate("sessionStorage.length") == 0


def test_try_upload_cutout_and_download_the_apis_bytes(tab, key, live, tmp_path):
    page = tab.page
    tab.sign_in(key)
    upload = tmp_path / "scene.png"
    upload.write_bytes(SCENE_PNG)
    page.set_input_files("#image-file", str(upload))
    page.get_by_role("button", name="Remove background").click()
    page.wait_for_function("() => document.querySelector('#cutout-image')?.naturalWidth > 0")
    details = page.inner_text(".results .facts").lower()
    assert "240 × 180 px" in details and "image/png" in details and "pipeline: infer" in details
    # the matte canvas is the cutout's alpha: white inside the disc, black in the corners
    matte = page.evaluate("""() => { const c = document.querySelector('#alpha-matte');
        const ctx = c.getContext('2d'); return [c.width, c.height,
        ctx.getImageData(c.width / 2, c.height / 2, 1, 1).data[0], ctx.getImageData(2, 2, 1, 1).data[0]]; }""")
    assert matte[:2] == [240, 180] and matte[2] > 200 and matte[3] < 50
    page.fill("#compare-slider", "20")
    assert "20%" in page.get_attribute(".after-layer", "style")
    with page.expect_download() as info:
        page.click("#download-link")
    download = info.value
    downloaded = Path(download.path()).read_bytes()
    assert download.suggested_filename.startswith("cutout-job_") and download.suggested_filename.endswith(".png")
    same = _api(live, key, "POST", "/v2", files={"image_file": ("scene.png", SCENE_PNG, "image/png")},
                data={"format": "png", "channels": "rgba", "size": "full", "crop": "false", "despill": "false"})
    assert same.status_code == 200, same.text
    assert downloaded == same.content
    assert _alpha_iou(downloaded, MASK) > 0.85
    tab.shot("try")

    # drag and drop a second image; a background colour from the picker flattens the output
    data = page.evaluate_handle("""([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: 'image/png' }));
        return transfer; }""", [base64.b64encode(SCENE_PNG).decode(), "dropped.png"])
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": data})
    assert "dropped.png" in page.inner_text(".file-name")
    page.check("#opt-bg-on")
    page.fill("#opt-bg-color", "#00ff00")
    page.get_by_label("Format").select_option("jpg")
    page.get_by_role("button", name="Remove background").click()
    page.get_by_text("This output has no alpha channel").wait_for()
    with page.expect_download() as info:
        page.click("#download-link")
    flat = Image.open(io.BytesIO(Path(info.value.path()).read_bytes()))
    assert flat.format == "JPEG" and flat.mode == "RGB"
    r, g, b = flat.getpixel((3, 3))
    assert g > 200 and r < 60 and b < 60  # the chosen green behind the subject

    # a file that only claims to be an image gets the API's error, code and request id
    tab.allowed.append(re.compile(r"Failed to load resource: the server responded with a status of 4\d\d"))
    fake = tmp_path / "notes.png"
    fake.write_bytes(b"these are my notes, not pixels")
    page.set_input_files("#image-file", str(fake))
    page.get_by_role("button", name="Remove background").click()
    alert = page.locator(".try-form [role=alert]")
    alert.wait_for()
    text = alert.inner_text()
    assert "The cutout failed" in text and "invalid_image" in text and "HTTP 422" in text and "request req_" in text


def test_try_marketplace_preset_and_shadow_picker(tab, key, live, tmp_path):
    """The preset picker lists GET /v2/layouts; the listing image it downloads is what POST /v2 makes with
    the same layout (and shadow) and has the preset's geometry and exact white background."""
    page = tab.page
    tab.sign_in(key)
    upload = tmp_path / "scene.png"
    upload.write_bytes(SCENE_PNG)
    page.set_input_files("#image-file", str(upload))
    listed = _api(live, key, "GET", "/v2/layouts").json()["data"]
    # The picker fills itself from its own GET /v2/layouts once the form is shown: wait for that answer.
    page.wait_for_function("n => document.querySelectorAll('#opt-layout option').length >= n", arg=len(listed) + 1)
    presets = page.eval_on_selector_all("#opt-layout option", "options => options.map(o => o.value)")
    assert presets == ["", *[p["name"] for p in listed]] and "amazon" in presets
    page.get_by_label("Marketplace layout").select_option("amazon")
    assert "Amazon Seller Central" in page.inner_text("#opt-layout-hint")

    def run_and_download(shadow: str) -> bytes:
        page.get_by_label("Shadow").select_option(shadow)
        before = page.evaluate("() => document.querySelector('#download-link')?.href || ''")
        page.get_by_role("button", name="Remove background").click()
        page.wait_for_function("(old) => (document.querySelector('#download-link')?.href || old) !== old", arg=before)
        page.get_by_text("This output has no alpha channel").wait_for()
        with page.expect_download() as info:
            page.click("#download-link")
        return Path(info.value.path()).read_bytes()

    plain = run_and_download("")
    assert "2000 × 2000 px" in page.inner_text(".results .facts")
    image = np.asarray(Image.open(io.BytesIO(plain)).convert("RGB"))
    assert image.shape == (2000, 2000, 3)
    rows, cols = np.nonzero((image != 255).any(axis=2))
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    assert abs((left + right) / 2 - 1000) <= 1 and abs((top + bottom) / 2 - 1000) <= 1
    assert abs(max(right - left, bottom - top) - 1800) <= 18  # amazon: the subject spans 90 % of the frame
    assert (image[:top] == 255).all() and (image[bottom:] == 255).all()
    same = _api(live, key, "POST", "/v2", files={"image_file": ("scene.png", SCENE_PNG, "image/png")},
                data={"format": "png", "channels": "rgba", "size": "full", "crop": "false", "despill": "false",
                      "layout": "amazon"})
    assert same.status_code == 200 and same.content == plain

    shadowed = np.asarray(Image.open(io.BytesIO(run_and_download("contact"))).convert("RGB"))
    below = shadowed[bottom:bottom + 60, left:right]
    assert below.min() < 245 and (shadowed[:top] == 255).all()  # a grey shadow under the base, none above
    assert (image[bottom:bottom + 60, left:right] == 255).all()
    tab.shot("try-layout")


def test_batch_with_failures_replay_until_all_succeed(tab, key, live, servers):
    page = tab.page
    host, _ = servers
    ImageHost.fixed = False
    tab.sign_in(key)
    tab.nav("Batches").click()
    page.get_by_role("heading", name="Batches", level=1).wait_for()
    lines = [f"{host.url}/img/{n}.png SKU-{n}" for n in range(5)]
    lines += [f"{host.url}/broken/{n}.png SKU-B{n}" for n in range(5, 8)]
    page.get_by_label("Image URLs, one per line").fill("\n".join(lines))
    page.get_by_role("button", name="Start batch").click()
    page.wait_for_url(re.compile(r"#/batches/batch_[0-9a-f]+$"))
    batch_id = page.url.rsplit("/", 1)[1]

    # live progress until the batch completes: 5 succeeded, 3 failed with the fetch's error code
    page.locator(".batch-head .status-completed").wait_for(timeout=90_000)
    assert page.get_by_role("button", name="Replay failed (3)").is_enabled()
    failed_cards = page.locator(".thumb-card.status-failed")
    assert failed_cards.count() == 3
    for code in failed_cards.locator(".error-code").all_inner_texts():
        assert code == "image_url_unreachable"
    assert "404" in failed_cards.first.inner_text()
    page.wait_for_function("() => [...document.querySelectorAll('.thumb-card.status-succeeded img')]"
                           ".filter((i) => i.naturalWidth > 0).length === 5")
    progress = page.locator("section[aria-label=Progress]")
    assert progress.locator("progress").get_attribute("value") == "8"  # 8 of 8 finished, 3 of them failed
    assert "100% · 8 of 8" in progress.inner_text() and "3 failed" in progress.inner_text()
    page.get_by_role("button", name="failed (3)", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('#items .thumb-card').length === 3")
    assert page.get_by_role("button", name="failed (3)", exact=True).get_attribute("aria-pressed") == "true"
    tab.shot("batch-failed")
    page.get_by_role("button", name=re.compile(r"^all")).click()
    page.wait_for_function("() => document.querySelectorAll('#items .thumb-card').length === 8")

    # fix the cause, replay one item by itself, then the rest with "Replay failed"
    ImageHost.fixed = True
    page.get_by_role("button", name="Replay SKU-B5").click()
    page.get_by_role("button", name="Replay failed (2)").wait_for(timeout=60_000)
    page.get_by_role("button", name="Replay failed (2)").click()
    page.get_by_role("button", name="Replay failed (0)").wait_for(timeout=60_000)
    page.locator(".batch-head .status-completed").wait_for(timeout=60_000)
    page.wait_for_function("() => [...document.querySelectorAll('.thumb-card.status-succeeded img')]"
                           ".filter((i) => i.naturalWidth > 0).length === 8")
    body = _api(live, key, "GET", f"/v2/batches/{batch_id}").json()
    assert body["status"] == "completed" and body["counts"]["succeeded"] == 8 and body["counts"]["failed"] == 0
    assert {j["external_id"]: j["replays"] for j in body["items"]["data"]}["SKU-B5"] == 1
    tab.shot("batch")

    # the list page shows the batch with a full progress bar and its counts
    page.get_by_role("link", name="← Batches").click()
    row = page.locator(f"[data-batch-id='{batch_id}']")
    row.wait_for()
    assert row.locator("progress").get_attribute("value") == "8" and "8 succeeded" in row.inner_text()
    tab.shot("batches")


def test_jobs_search_job_page_and_webhook_resend(tab, key, live, servers):
    page = tab.page
    _, receiver = servers
    Receiver.received = []
    assert _api(live, key, "POST", "/v2/webhooks/secret/rotate").status_code == 201
    created = _api(live, key, "POST", "/v2/jobs", files={"image_file": ("hook.png", SCENE_PNG, "image/png")},
                   data={"webhook_url": f"{receiver.url}/hook", "external_id": "HOOK-1", "format": "webp"})
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    support.wait_for(lambda: Receiver.received, 60, what="the first webhook")

    tab.sign_in(key)
    tab.nav("Jobs").click()
    page.locator(f"tr[data-job-id='{job_id}']").wait_for()
    page.get_by_label("Search").fill("hook-1")
    page.wait_for_function("() => document.querySelectorAll('#jobs-table tbody tr[data-job-id]').length === 1")
    tab.shot("jobs")
    page.get_by_role("link", name=job_id).click()
    page.get_by_role("heading", name=f"Job {job_id}").wait_for()
    timings = page.get_by_role("list", name="Stage timings").first
    assert "Pipeline" in timings.inner_text() and "Total" in timings.inner_text()
    page.wait_for_function("() => document.querySelector('.result-preview img')?.naturalWidth > 0")
    delivery = page.locator(".delivery").first
    delivery.locator(".status-succeeded").wait_for()
    assert "job.succeeded" in delivery.inner_text() and "204" in delivery.inner_text()
    message_id = Receiver.received[0][0]["webhook-id"]
    page.get_by_role("button", name=re.compile(r"^Resend job\.succeeded")).click()
    support.wait_for(lambda: len(Receiver.received) >= 2, 30, what="the resent webhook")
    assert Receiver.received[1][0]["webhook-id"] == message_id
    page.reload()
    page.locator(".delivery table tbody tr").nth(1).wait_for()
    tab.shot("job")

    # a full job id in the search box opens the job; an unknown one says so with its code
    tab.nav("Jobs").click()
    page.get_by_label("Search").fill("job_" + "0" * 32)
    tab.allowed.append(re.compile(r"status of 404"))
    page.get_by_role("button", name="Search").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "job_not_found" in alert.inner_text() and "No such job" in alert.inner_text()


def test_batch_list_pages_with_a_cursor(key, live, servers):
    host, _ = servers
    ids = []
    for n in (1, 2):
        created = _api(live, key, "POST", "/v2/batches", json={"items": [{"image_url": f"{host.url}/img/{n}.png"}]})
        assert created.status_code == 202, created.text
        ids.append(created.json()["id"])
    for batch_id in ids:
        support.wait_for(lambda: _api(live, key, "GET", f"/v2/batches/{batch_id}").json()["status"] == "completed",
                         60, interval=0.3, what=f"batch {batch_id}")
    first = _api(live, key, "GET", "/v2/batches?limit=1").json()
    assert [b["id"] for b in first["data"]] == [ids[1]] and first["has_more"] is True  # newest first
    assert first["data"][0]["counts"]["succeeded"] == 1 and first["data"][0]["progress"] == 1.0
    second = _api(live, key, "GET", f"/v2/batches?limit=1&cursor={first['next_cursor']}").json()
    assert [b["id"] for b in second["data"]] == [ids[0]]
    assert {b["id"] for b in _api(live, key, "GET", "/v2/batches?status=completed&limit=100").json()["data"]} >= set(ids)
    assert _api(live, key, "GET", "/v2/batches?status=processing&limit=100").json()["data"] == []
    bad = _api(live, key, "GET", "/v2/batches?status=done")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_status"


def test_usage_page_and_endpoints_are_scoped_to_the_account(tab, key, live, env):
    with support.context(env).db() as session:
        account = session.scalar(select(Account).where(Account.name == ACCOUNT))
        charged = session.scalar(select(func.coalesce(func.sum(Usage.units), 0)).where(Usage.account_id == account.id))
        pngs = session.scalar(select(func.count()).select_from(Usage).join(Job, Job.id == Usage.job_id)
                              .where(Usage.account_id == account.id, Job.options["format"].as_string() == "png"))
    assert charged > 0
    usage = _api(live, key, "GET", "/v2/usage?days=7").json()
    assert usage["images"] == charged and len(usage["per_day"]) == 7
    assert usage["per_day"][-1]["images"] == charged  # everything in this module happened today
    assert {r["value"]: r["images"] for r in usage["per_option"]["format"]}["png"] == pngs
    other = support.new_key(env, "console-tests-other")
    assert _api(live, other, "GET", "/v2/usage").json()["images"] == 0
    assert _api(live, other, "GET", "/v2/batches").json()["data"] == []
    bad = _api(live, key, "GET", "/v2/usage?days=0")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_days"

    page = tab.page
    tab.sign_in(key)
    tab.nav("Usage").click()
    page.locator("#usage-total").wait_for()
    assert float(page.inner_text("#usage-total strong")) == charged
    assert page.locator("#usage-chart rect.chart-bar").count() == 30
    assert "png" in page.get_by_role("region", name="Images by Format").inner_text()
    page.select_option("#usage-days", "7")
    page.wait_for_function("() => document.querySelectorAll('#usage-chart rect.chart-bar').length === 7")
    tab.shot("usage")


def test_keyboard_navigation_and_focus_are_visible(tab, key):
    page = tab.page
    tab.sign_in(key)
    assert page.evaluate("document.activeElement.textContent") == "Try a cutout"  # a new page focuses its title
    page.focus(".brand")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert page.locator(".skip-link").is_visible()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.tagName") == "H1"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "image-file"
    assert page.evaluate("getComputedStyle(document.querySelector('#dropzone')).outlineStyle") == "solid"
    tab.nav("Jobs").focus()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Jobs", level=1).wait_for()
    assert tab.nav("Jobs").get_attribute("aria-current") == "page"


def test_review_page_shows_flagged_cutouts_and_accept_clears_them(tab, key, live, servers):
    host, _ = servers
    r = _api(live, key, "POST", "/v2/batches", json={"items": [
        {"image_url": f"{host.url}/img/{n}.png", "external_id": f"REVIEW-{n}",
         "options": {"review_below": "1" if n else "0"}} for n in range(2)]})
    assert r.status_code == 202, r.text
    bid = r.json()["id"]
    support.wait_for(lambda: _api(live, key, "GET", f"/v2/batches/{bid}").json()["status"] == "completed", 90, 0.3,
                     "review batch")
    flagged = [j for j in _api(live, key, "GET", f"/v2/jobs?batch={bid}").json()["data"] if j["needs_review"]]
    assert [j["external_id"] for j in flagged] == ["REVIEW-1"]
    page = tab.page
    tab.sign_in(key)
    tab.nav("Review").click()
    page.get_by_role("heading", name="Review", level=1).wait_for()
    card = page.locator(f'li.review-card[data-job-id="{flagged[0]["id"]}"]')
    card.wait_for()
    page.wait_for_function("id => { const img = document.querySelector(`li[data-job-id='${id}'] .checkerboard img`);"
                           " return img && img.complete && img.naturalWidth > 0; }", arg=flagged[0]["id"])
    assert card.locator(".checkerboard img").get_attribute("src").startswith("blob:")
    assert "confidence 0." in card.inner_text() and card.get_by_role("link", name="Download").is_visible()
    assert page.locator('li.review-card:has-text("REVIEW-0")').count() == 0
    assert page.get_by_role("region", name=f"Batch {bid}").count() == 1
    tab.shot("review")
    card.get_by_role("button", name="Accept REVIEW-1").click()
    card.wait_for(state="detached")
    job = _api(live, key, "GET", f"/v2/jobs/{flagged[0]['id']}").json()
    assert job["needs_review"] is False and job["accepted_at"]
    assert flagged[0]["id"] not in [j["id"] for j in _api(live, key, "GET", "/v2/jobs?needs_review=true").json()["data"]]
