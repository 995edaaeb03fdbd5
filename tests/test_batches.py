"""POST /v2/batches end to end: 100 items from a local image server, some broken; replay after the fix."""
import io
import json

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from clearcut import webhooks
from clearcut.db.models import Account, Job
from tests import async_support as support

pytestmark = pytest.mark.timeout(300)
IMAGES = {n: support.scene_png(96, 64, 12 + n % 16) for n in range(16)}


class ImageHost(support.Quiet):
    """/img/N.png serves an image; /broken/N is 404 and /page/N is HTML until ``fixed`` is set."""
    fixed = False

    def do_GET(self):  # noqa: N802 - http.server API
        kind, _, rest = self.path.strip("/").partition("/")
        n = int(rest.split(".")[0]) % 16
        if kind == "img" or self.fixed:
            status, body, ctype = 200, IMAGES[n], "image/png"
        elif kind == "broken":
            status, body, ctype = 404, b"gone", "text/plain"
        else:
            status, body, ctype = 200, b"<html>not an image</html>", "text/html"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Receiver(support.Recorder):
    received: list = []


from tests.async_support import env, stack  # noqa: E402,F401 - shared module fixtures


@pytest.fixture(scope="module")
def servers():
    yield from support.serving(ImageHost, Receiver)


@pytest.fixture(scope="module")
def key(stack, env):
    return support.new_key(env, "batch-tests")


def _batch(client, key, bid):
    return client.get(f"/v2/batches/{bid}?limit=1000", headers={"x-api-key": key}).get_json()


def _wait_completed(client, key, bid, timeout=120):
    return support.wait_for(lambda: (b := _batch(client, key, bid))["status"] == "completed" and b, timeout,
                            interval=0.3, what=f"batch {bid} to complete")


def test_hundred_items_some_broken_then_replay_after_fix(stack, key, env, servers):
    client = stack[0].test_client()
    host, receiver = servers
    with support.context(env).db.begin() as session:
        account = session.scalar(select(Account).where(Account.name == "batch-tests"))
        secret = webhooks.rotate_secret(session, account.id)
    items = []
    for i in range(100):
        kind = "broken" if i % 10 == 3 else "page" if i % 25 == 7 else "img"
        item = {"image_url": f"{host.url}/{kind}/{i}.png", "external_id": f"SKU-{i:03d}"}
        if i % 20 == 0:
            item["options"] = {"format": "jpg"}  # per-item options override the shared ones
        items.append(item)
    r = client.post("/v2/batches", headers={"x-api-key": key},
                    json={"items": items, "options": {"format": "png", "size": "full"},
                          "webhook_url": f"{receiver.url}/hooks", "metadata": {"import": "spring"}})
    assert r.status_code == 202, r.get_data(as_text=True)
    body = r.get_json()
    assert body["id"].startswith("batch_") and body["status"] == "processing" and body["total"] == 100
    assert set(body["counts"]) == {"queued", "processing", "succeeded", "failed", "canceled", "needs_review"}
    assert r.headers["Location"] == body["status_url"]

    done = _wait_completed(client, key, body["id"])
    broken = {f"SKU-{i:03d}" for i in range(100) if i % 10 == 3}
    pages = {f"SKU-{i:03d}" for i in range(100) if i % 25 == 7}
    assert done["counts"] == {"queued": 0, "processing": 0, "succeeded": 100 - len(broken) - len(pages),
                              "failed": len(broken) + len(pages), "canceled": 0,
                              "needs_review": done["counts"]["needs_review"]}
    assert done["progress"] == 1.0 and done["throughput_per_s"] > 0 and done["eta_s"] == 0.0
    by_sku = {j["external_id"]: j for j in done["items"]["data"]}
    assert len(by_sku) == 100 and not done["items"]["has_more"]
    for sku in broken:
        assert by_sku[sku]["error"]["code"] == "image_url_unreachable" and "404" in by_sku[sku]["error"]["message"]
    for sku in pages:
        assert by_sku[sku]["error"]["code"] == "invalid_image"
    ok = by_sku["SKU-000"]
    assert ok["status"] == "succeeded" and ok["options"]["format"] == "jpg" and ok["timings_ms"]["fetch_ms"] >= 0
    cut = client.get(f"/v2/jobs/{by_sku['SKU-001']['id']}/result", headers={"x-api-key": key})
    assert cut.mimetype == "image/png"
    assert Image.open(io.BytesIO(cut.data)).convert("RGBA").getpixel((1, 1))[3] < 50  # background removed
    jpg = client.get(f"/v2/jobs/{ok['id']}/result", headers={"x-api-key": key})
    assert Image.open(io.BytesIO(jpg.data)).format == "JPEG"

    completed = support.wait_for(lambda: [json.loads(b) for _, b in Receiver.received
                                          if json.loads(b)["type"] == "batch.completed"], 30,
                                 what="batch.completed webhook")
    headers, raw = next((h, b) for h, b in Receiver.received if json.loads(b)["type"] == "batch.completed")
    payload = webhooks.verify(secret, headers, raw)
    assert payload["data"]["id"] == body["id"] and payload["data"]["counts"]["failed"] == len(broken | pages) == 14
    assert payload["data"]["metadata"] == {"import": "spring"} and len(completed) == 1

    # Fix the cause, then replay the failed items (the default): same job ids, all succeed.
    ImageHost.fixed = True
    replay = client.post(f"/v2/batches/{body['id']}/replay", headers={"x-api-key": key})
    assert replay.status_code == 202 and replay.get_json()["replayed"] == 14
    assert set(replay.get_json()["replayed_job_ids"]) == {by_sku[s]["id"] for s in broken | pages}
    again = _wait_completed(client, key, body["id"])
    assert again["counts"]["succeeded"] == 100 and again["counts"]["failed"] == 0
    replayed = {j["external_id"]: j for j in again["items"]["data"]}
    assert all(replayed[s]["replays"] == 1 and replayed[s]["status"] == "succeeded" for s in broken | pages)
    assert replayed["SKU-001"]["replays"] == 0
    support.wait_for(lambda: sum(json.loads(b)["type"] == "batch.completed" for _, b in Receiver.received) == 2,
                     30, what="second batch.completed")
    # Nothing left to replay among failures; ?status= chooses other states.
    assert client.post(f"/v2/batches/{body['id']}/replay", headers={"x-api-key": key}).get_json()["replayed"] == 0
    with support.context(env).db() as session:
        assert session.scalar(select(Job.queue).where(Job.batch_id == body["id"]).limit(1)) == "batch"


def test_items_pagination_and_job_filter(stack, key, env, servers):
    client = stack[0].test_client()
    host, _ = servers
    r = client.post("/v2/batches", headers={"x-api-key": key},
                    json={"items": [{"image_url": f"{host.url}/img/{i}.png"} for i in range(7)]})
    bid = r.get_json()["id"]
    _wait_completed(client, key, bid)
    seen, cursor = [], None
    while True:
        page = client.get(f"/v2/batches/{bid}?limit=3" + (f"&cursor={cursor}" if cursor else ""),
                          headers={"x-api-key": key}).get_json()["items"]
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 7
    listed = client.get(f"/v2/jobs?batch={bid}&limit=100", headers={"x-api-key": key}).get_json()["data"]
    assert sorted(j["id"] for j in listed) == sorted(seen)


def test_s3_key_and_asset_id_items(stack, key, env, s3):
    client = stack[0].test_client()
    with support.context(env).db() as session:
        account_id = session.scalar(select(Account.id).where(Account.name == "batch-tests"))
    s3.storage.put(f"imports/{account_id}/a.png", IMAGES[3], "image/png")
    first = client.post("/v2/jobs", headers={"x-api-key": key},
                        data={"image_file": (io.BytesIO(IMAGES[5]), "x.png")}).get_json()
    asset_id = first["asset_id"]
    with support.context(env).db() as session:
        assert asset_id == session.get(Job, first["id"]).input_asset_id
    r = client.post("/v2/batches", headers={"x-api-key": key}, json={"items": [
        {"s3_key": f"imports/{account_id}/a.png", "external_id": "from-s3"},
        {"s3_key": f"imports/{account_id}/missing.png", "external_id": "missing"},
        {"asset_id": asset_id, "external_id": "from-asset", "options": {"format": "webp"}}]})
    assert r.status_code == 202, r.get_data(as_text=True)
    done = _wait_completed(client, key, r.get_json()["id"])
    by = {j["external_id"]: j for j in done["items"]["data"]}
    assert by["from-s3"]["status"] == "succeeded" and by["from-asset"]["status"] == "succeeded"
    assert by["from-asset"]["options"]["format"] == "webp"
    assert by["missing"]["error"]["code"] == "s3_key_not_found"


def test_batch_with_a_marketplace_preset_and_an_item_that_overrides_it(stack, key, env, servers):
    """Shared options name a preset; an item's own option wins over the preset's, the rest of it stays."""
    client = stack[0].test_client()
    host, _ = servers
    r = client.post("/v2/batches", headers={"x-api-key": key}, json={
        "items": [{"image_url": f"{host.url}/img/{i}.png", "external_id": f"p{i}"} for i in range(2)]
        + [{"image_url": f"{host.url}/img/2.png", "external_id": "small", "options": {"canvas": "800x800"}}],
        "options": {"layout": "ebay", "format": "jpg"}})
    assert r.status_code == 202, r.get_data(as_text=True)
    done = _wait_completed(client, key, r.get_json()["id"])
    by = {j["external_id"]: j for j in done["items"]["data"]}
    for name, side in (("p0", 1600), ("p1", 1600), ("small", 800)):
        assert by[name]["status"] == "succeeded", by[name]
        result = client.get(f"/v2/jobs/{by[name]['id']}/result", headers={"x-api-key": key})
        image = Image.open(io.BytesIO(result.data))
        assert image.format == "JPEG" and image.size == (side, side)
        pixels = np.asarray(image.convert("RGB")).astype(int)
        rows, cols = np.nonzero((np.abs(pixels - 255) > 12).any(axis=2))  # JPEG: near-white is background
        box = max(rows.max() + 1 - rows.min(), cols.max() + 1 - cols.min())
        assert abs(box - 0.9 * side) <= 0.02 * side  # ebay: the subject spans 90 % of the square
        assert abs((cols.min() + cols.max() + 1) / 2 - side / 2) <= 2 and (pixels[:8, :8] >= 250).all()


@pytest.mark.parametrize("payload,status,code", [
    ({"items": []}, 400, "invalid_batch"),
    ({"items": [{"image_url": "http://x/a.png", "s3_key": "imports/a"}]}, 400, "multiple_images"),
    ({"items": [{"external_id": "no-image"}]}, 400, "missing_image"),
    ({"items": [{"image_url": "http://x/a.png", "options": {"format": "svg"}}]}, 400, "invalid_format"),
    ({"items": [{"image_url": "file:///etc/passwd"}]}, 400, "url_not_allowed"),
    ({"items": [{"s3_key": "originals/abc"}]}, 400, "s3_key_not_allowed"),
    ({"items": [{"asset_id": "asset_nope"}]}, 400, "asset_not_found"),
    ({"items": [{"image_url": "http://x/a.png", "colour": "red"}]}, 400, "unknown_field"),
    ({"items": [{"image_url": "http://x/a.png"}], "shadow": True}, 400, "unknown_field"),
])
def test_invalid_batches_are_rejected_whole(stack, key, env, payload, status, code):
    client = stack[0].test_client()
    r = client.post("/v2/batches", headers={"x-api-key": key}, json=payload)
    assert r.status_code == status, r.get_data(as_text=True)
    error = r.get_json()["error"]
    assert error["code"] == code and error["message"]
    if payload["items"] and "shadow" not in payload:
        assert error["message"].startswith("items[0]") and error["details"]["index"] == 0


def test_batch_size_cap(stack, key, env, monkeypatch):
    monkeypatch.setenv("CLEARCUT_BATCH_MAX_ITEMS", "3")
    client = stack[0].test_client()
    r = client.post("/v2/batches", headers={"x-api-key": key},
                    json={"items": [{"image_url": f"http://x/{i}.png"} for i in range(4)]})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "batch_too_large"
