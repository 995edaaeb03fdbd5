"""The review queue end to end with a real worker: confidence and needs_review on jobs, the X-Confidence
header (also on a vendor route), the list filters, accept, replay, batch counts and the webhook field."""
import io
import json

import pytest
from sqlalchemy import select

from clearcut import webhooks
from clearcut.db.models import Account
from tests import async_support as support

pytestmark = pytest.mark.timeout(300)

from tests.async_support import env, stack  # noqa: E402,F401 - shared module fixtures


class ImageHost(support.Quiet):
    def do_GET(self):  # noqa: N802 - http.server API
        self.reply(200, support.scene_png(96, 64, 12 + int(self.path.strip("/").split(".")[0]) % 8), "image/png")


class Receiver(support.Recorder):
    received: list = []

    @classmethod
    def events(cls) -> list[dict]:
        return [json.loads(body) for _, body in cls.received]


@pytest.fixture(scope="module")
def servers():
    yield from support.serving(ImageHost, Receiver)


@pytest.fixture(scope="module")
def key(stack, env):
    return support.new_key(env, "review-tests")


def _job(client, key, image, **fields):
    r = client.post("/v2/jobs", headers={"x-api-key": key},
                    data={"image_file": (io.BytesIO(image), "in.png"), "cache": "false", **fields})
    assert r.status_code == 202, r.get_data(as_text=True)
    return support.wait_job(client, key, r.get_json()["id"])


def _list(client, key, query):
    r = client.get(f"/v2/jobs?{query}", headers={"x-api-key": key})
    assert r.status_code == 200, r.get_data(as_text=True)
    return [j["id"] for j in r.get_json()["data"]]


def test_confidence_flags_header_filters_accept_and_replay(stack, key):
    client = stack[0].test_client()
    image = support.scene_png(96, 64, 20)
    flagged = _job(client, key, image, review_below="1")   # every cutout scores below 1
    clean = _job(client, key, image, review_below="0")     # none below 0
    for job in (flagged, clean):
        assert job["status"] == "succeeded" and 0 <= job["result"]["confidence"] < 1
        assert job["options"]["review_below"] in (0, 1)
    assert flagged["needs_review"] is True and clean["needs_review"] is False and flagged["accepted_at"] is None

    result = client.get(f"/v2/jobs/{flagged['id']}/result", headers={"x-api-key": key})
    assert float(result.headers["X-Confidence"]) == pytest.approx(flagged["result"]["confidence"], abs=1e-4)
    assert result.headers["X-Needs-Review"] == "true"
    sync = client.post("/v2", headers={"x-api-key": key}, data={"image_file": (io.BytesIO(image), "in.png")})
    assert sync.status_code == 200 and 0 <= float(sync.headers["X-Confidence"]) <= 1
    vendor = client.post("/v1.0/removebg", headers={"X-Api-Key": key},
                         data={"image_file": (io.BytesIO(image), "in.png")})
    assert vendor.status_code == 200, vendor.get_data(as_text=True)
    assert float(vendor.headers["X-Confidence"]) == float(sync.headers["X-Confidence"])

    queue = _list(client, key, "needs_review=true")
    assert flagged["id"] in queue and clean["id"] not in queue
    assert clean["id"] in _list(client, key, "needs_review=false")
    below = _list(client, key, f"confidence_below={flagged['result']['confidence'] + 0.0001:.4f}")
    assert flagged["id"] in below and clean["id"] in below
    assert flagged["id"] not in _list(client, key, f"confidence_below={flagged['result']['confidence']:.4f}")
    for query, code in (("needs_review=maybe", "invalid_boolean"), ("confidence_below=2", "invalid_confidence_below"),
                        ("confidence_below=abc", "invalid_confidence_below")):
        r = client.get(f"/v2/jobs?{query}", headers={"x-api-key": key})
        assert r.status_code == 400 and r.get_json()["error"]["code"] == code
    bad = client.post("/v2/jobs", headers={"x-api-key": key},
                      data={"image_file": (io.BytesIO(image), "in.png"), "review_below": "1.5"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_review_below"

    accepted = client.post(f"/v2/jobs/{flagged['id']}/accept", headers={"x-api-key": key})
    assert accepted.status_code == 200
    body = accepted.get_json()
    assert body["needs_review"] is False and body["accepted_at"]
    assert flagged["id"] not in _list(client, key, "needs_review=true")

    # A replay with another model is a new cutout with its own confidence, judged afresh
    r = client.post(f"/v2/jobs/{flagged['id']}/replay", headers={"x-api-key": key},
                    json={"options": {"model": "u2net"}})
    assert r.status_code == 202, r.get_data(as_text=True)
    replayed = support.wait_job(client, key, flagged["id"])
    assert replayed["options"]["model"] == "u2net" and replayed["result"]["models"][0]["name"] == "u2net"
    assert replayed["needs_review"] is True and replayed["accepted_at"] is None
    assert replayed["result"]["confidence"] != flagged["result"]["confidence"]


def test_batch_counts_and_webhook_payloads(stack, key, env, servers):
    client = stack[0].test_client()
    host, receiver = servers
    with support.context(env).db.begin() as session:
        account = session.scalar(select(Account).where(Account.name == "review-tests"))
        webhooks.rotate_secret(session, account.id)
    items = [{"image_url": f"{host.url}/{i}.png", "external_id": f"R-{i}",
              "options": {"review_below": "1" if i % 2 else "0"}} for i in range(6)]
    r = client.post("/v2/batches", headers={"x-api-key": key},
                    json={"items": items, "webhook_url": f"{receiver.url}/hooks"})
    assert r.status_code == 202, r.get_data(as_text=True)
    bid = r.get_json()["id"]
    done = support.wait_for(lambda: (b := client.get(f"/v2/batches/{bid}", headers={"x-api-key": key}).get_json())
                            ["status"] == "completed" and b, 120, 0.3, "batch to complete")
    assert done["counts"]["succeeded"] == 6 and done["counts"]["needs_review"] == 3 and done["total"] == 6
    completed = support.wait_for(lambda: next((e for e in Receiver.events() if e["type"] == "batch.completed"
                                               and e["data"]["id"] == bid), None), 60, 0.2, "batch webhook")
    assert completed["data"]["counts"]["needs_review"] == 3
    image = support.scene_png(96, 64, 21)
    for below, expected in (("1", True), ("0", False)):
        job = _job(client, key, image, review_below=below, webhook_url=f"{receiver.url}/hooks")
        event = support.wait_for(lambda: next((e for e in Receiver.events() if e["data"].get("id") == job["id"]),
                                              None), 60, 0.2, "job webhook")
        assert event["type"] == "job.succeeded" and event["data"]["needs_review"] is expected
        assert event["data"]["confidence"] == job["result"]["confidence"]
