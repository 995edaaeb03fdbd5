"""``clearcut import`` against a live stack (the app over real HTTP, a real worker, u2netp): a folder tree
with good and broken files, resume after an interruption without duplicate jobs, a CSV of URLs through
the SSRF guard in several batches, ``--replay-failed`` and ``--skip-existing``, an ``s3:`` prefix of the
account's import area in SeaweedFS (and another account's, refused), identical files uploaded once."""
from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image
from sqlalchemy import func, select

from clearcut.cli.main import main
from clearcut.client import Client
from clearcut.db.models import Account, Job, Usage
from tests import async_support as support
from tests.async_support import env, live, stack  # noqa: F401 - shared module fixtures
from tests.conftest import encode_image, synthetic_scene

pytestmark = pytest.mark.timeout(300)


class ImageHost(support.Quiet):
    """/img/N.png serves an image; /broken/N.png is 404 until ``fixed`` is set."""
    fixed = False

    def do_GET(self):  # noqa: N802 - http.server API
        kind, _, rest = self.path.strip("/").partition("/")
        if kind == "img" or type(self).fixed:
            self.reply(200, support.scene_png(80, 60, 10 + int(rest.split(".")[0]) % 10), "image/png")
        else:
            self.reply(404, b"gone", "text/plain")


@pytest.fixture(scope="module")
def host():
    yield from support.serving(ImageHost)


def _tree(root):
    """Four good photos in nested folders, a truncated PNG and a text file named .png."""
    files = {"a.png": support.scene_png(96, 64, 14), "sub/b.png": support.scene_png(96, 64, 20),
             "sub/deep/c.jpg": encode_image(synthetic_scene(90, 70, 18)[0].convert("RGB"), "JPEG"),
             "sub/d.webp": encode_image(synthetic_scene(64, 64, 16)[0], "WEBP")}
    whole = support.scene_png(120, 90, 30)
    files["broken/truncated.png"] = whole[: len(whole) // 2]
    files["broken/not-an-image.png"] = b"this is a text file, not a photo\n" * 4
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _report(out) -> dict:
    with (out / "report.csv").open(newline="") as handle:
        return {row["item"]: row for row in csv.DictReader(handle)}


def _jobs_by_external_id(env, account_name) -> dict:
    with support.context(env).db() as session:
        account = session.scalar(select(Account).where(Account.name == account_name))
        rows = session.execute(select(Job.external_id, func.count()).where(Job.account_id == account.id)
                               .group_by(Job.external_id)).all()
        usage = session.scalar(select(func.count()).select_from(Usage).where(Usage.account_id == account.id))
        usage_jobs = session.scalar(select(func.count(func.distinct(Usage.job_id))).where(
            Usage.account_id == account.id))
    return {"jobs": dict(rows), "usage": usage, "usage_jobs": usage_jobs}


def _photos(tmp_path, count: int, pattern: str):
    """A folder ``photos`` of ``count`` distinct scenes named by ``pattern``."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(count):
        (folder / pattern.format(n=n)).write_bytes(support.scene_png(96, 64, 10 + 2 * n))
    return folder


def _import(url, key, *args) -> int:
    return main(["import", *map(str, args), "--server", url, "--key", key, "--poll-interval", "0.2",
                 "--timeout", "180"])


def test_folder_tree_good_and_broken_then_resume_without_duplicates(live, env, tmp_path):
    url, _ = live
    key = support.new_key(env, "import-tree")
    tree = _tree(tmp_path / "catalog")
    out = tmp_path / "out"
    assert _import(url, key, tree, "-o", out) == 1  # something failed
    report = _report(out)
    assert set(report) == {"catalog/a.png", "catalog/sub/b.png", "catalog/sub/deep/c.jpg", "catalog/sub/d.webp",
                           "catalog/broken/truncated.png", "catalog/broken/not-an-image.png"}
    good = [k for k in report if not k.startswith("catalog/broken/")]
    for item in good:
        row = report[item]
        assert row["status"] == "succeeded" and row["job_id"].startswith("job_") and not row["error_code"], row
        assert row["result_path"].endswith(".png") and 0 <= float(row["confidence"]) <= 1
        assert Image.open(out / row["result_path"]).mode == "RGBA"
    assert (out / "catalog/sub/deep/c.png").exists()  # the source tree is kept
    truncated, text = report["catalog/broken/truncated.png"], report["catalog/broken/not-an-image.png"]
    assert (truncated["status"], truncated["error_code"]) == ("failed", "corrupt_image") and truncated["job_id"]
    assert (text["status"], text["error_code"]) == ("failed", "invalid_image") and not text["job_id"]
    before = _jobs_by_external_id(env, "import-tree")
    assert set(before["jobs"].values()) == {1} and len(before["jobs"]) == 5

    # Interrupted: the state lost its second half (mid-line), and the results of two items are gone.
    state = out / ".clearcut-import.jsonl"
    text_state = state.read_text()
    state.write_text(text_state[: len(text_state) // 2])
    (out / report["catalog/a.png"]["result_path"]).unlink()
    assert _import(url, key, tree, "-o", out) == 1
    again = _report(out)
    assert {k: (r["status"], r["job_id"], r["error_code"]) for k, r in again.items()} == \
        {k: (r["status"], r["job_id"], r["error_code"]) for k, r in report.items()}
    assert (out / "catalog/a.png").exists()
    # No state at all: every POST's Idempotency-Key is derived from the item, so still no new job.
    state.unlink()
    assert _import(url, key, tree, "-o", out) == 1
    after = _jobs_by_external_id(env, "import-tree")
    assert after == before and after["usage"] == after["usage_jobs"]  # one job and one usage row per item
    assert {k: r["job_id"] for k, r in _report(out).items()} == {k: r["job_id"] for k, r in report.items()}


def test_csv_of_urls_in_batches_through_the_ssrf_guard_then_replay_failed(live, env, host, tmp_path):
    url, _ = live
    (server,) = host
    key = support.new_key(env, "import-csv")
    ImageHost.fixed = False
    listing = tmp_path / "urls.csv"
    rows = [["image_url", "external_id", "format"]]
    rows += [[f"{server.url}/img/{n}.png", f"SKU-{n}", ""] for n in range(4)]
    rows += [[f"{server.url}/broken/7.png", "SKU-7", "webp"], ["http://10.0.0.1/private.png", "SKU-private", ""]]
    with listing.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    out = tmp_path / "out"
    assert _import(url, key, listing, "-o", out, "--batch-size", "4") == 1
    report = _report(out)
    assert [report[f"SKU-{n}"]["status"] for n in range(4)] == ["succeeded"] * 4
    assert (report["SKU-7"]["status"], report["SKU-7"]["error_code"]) == ("failed", "image_url_unreachable")
    assert report["SKU-private"]["error_code"] == "url_not_allowed"  # the allowlist opens 127.0.0.1 only
    assert (out / "urls/SKU-0.png").exists()
    with support.context(env).db() as session:
        account = session.scalar(select(Account).where(Account.name == "import-csv"))
        batches = session.scalar(select(func.count(func.distinct(Job.batch_id))).where(Job.account_id == account.id))
    assert batches == 2  # 6 items, at most 4 per batch

    ImageHost.fixed = True  # the cause is fixed: replay the failures
    assert _import(url, key, listing, "-o", out, "--replay-failed") == 1  # the private address still fails
    replayed = _report(out)
    assert replayed["SKU-7"]["status"] == "succeeded" and replayed["SKU-7"]["job_id"] == report["SKU-7"]["job_id"]
    assert Image.open(out / replayed["SKU-7"]["result_path"]).format == "WEBP"  # the row's own format
    assert replayed["SKU-private"]["error_code"] == "url_not_allowed"
    jobs = _jobs_by_external_id(env, "import-csv")["jobs"]
    assert set(jobs.values()) == {1} and len(jobs) == 6


def test_skip_existing_and_review_list(live, env, tmp_path):
    url, _ = live
    key = support.new_key(env, "import-skip")
    photos = _photos(tmp_path, 3, "p{n}.png")
    out = tmp_path / "out"
    (out / "photos").mkdir(parents=True)
    (out / "photos/p1.webp").write_bytes(b"an earlier result")
    assert _import(url, key, photos, "-o", out, "--format", "webp", "--skip-existing", "--review-below", "1",
                   "--option", "channels=alpha") == 0
    report = _report(out)
    assert report["photos/p1.png"]["status"] == "skipped" and not report["photos/p1.png"]["job_id"]
    assert (out / "photos/p1.webp").read_bytes() == b"an earlier result"
    assert [report[f"photos/p{n}.png"]["status"] for n in (0, 2)] == ["succeeded"] * 2
    matte = Image.open(out / "photos/p0.webp")  # --option channels=alpha: a grey matte, no alpha channel
    assert "A" not in matte.getbands() and len(set(matte.convert("RGB").getpixel((40, 30)))) == 1
    review = (out / "review.txt").read_text().splitlines()  # review_below 1 flags every cutout
    assert sorted(line.split("\t")[0] for line in review) == ["photos/p0.png", "photos/p2.png"]
    assert set(_jobs_by_external_id(env, "import-skip")["jobs"]) == {"photos/p0.png", "photos/p2.png"}


def test_bad_options_and_missing_key_stop_before_any_request(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CLEARCUT_API_KEY", raising=False)
    (tmp_path / "a.png").write_bytes(support.scene_png())
    assert main(["import", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--bg-color", "bluish",
                 "--key", "k"]) == 2
    assert "bg_color" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]) == 2
    assert "CLEARCUT_API_KEY" in capsys.readouterr().err


def test_sigkill_mid_import_then_rerun_ends_every_item_once(live, env, tmp_path):
    url, _ = live
    key = support.new_key(env, "import-kill")
    photos = _photos(tmp_path, 16, "p{n:02d}.png")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "clearcut.cli", "import", str(photos), "-o", str(out), "--server", url,
               "--key", key, "--concurrency", "1", "--poll-interval", "0.2", "--timeout", "180"]
    process = subprocess.Popen(command, cwd=support.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / ".clearcut-import.jsonl"
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if state.exists() and state.read_text().count("job_") >= 8:  # about half uploaded
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait(timeout=60)
    assert subprocess.run(command, cwd=support.ROOT, capture_output=True, timeout=240).returncode == 0
    report = _report(out)
    assert len(report) == 16 and {row["status"] for row in report.values()} == {"succeeded"}
    counted = _jobs_by_external_id(env, "import-kill")
    assert counted["jobs"] == {f"photos/p{n:02d}.png": 1 for n in range(16)}
    assert counted["usage"] == counted["usage_jobs"] == 16


def _account_id(url, key) -> str:
    with Client(url, key) as cc:
        return cc.account()["account"]["id"]


def _put(s3, key: str, data: bytes) -> None:
    """An object dropped into the bucket the way an account's own tooling would: boto3, no Clearcut code."""
    s3.storage.client.put_object(Bucket=s3.storage.bucket, Key=key, Body=data)


def _alpha(path):
    import numpy as np

    image = Image.open(path)
    assert image.mode == "RGBA", path
    return np.asarray(image.getchannel("A"))


def _job_ids(env, account_name) -> dict:
    with support.context(env).db() as db:
        account = db.scalar(select(Account).where(Account.name == account_name))
        return dict(db.execute(select(Job.external_id, Job.id).where(Job.account_id == account.id)).all())


def test_s3_prefix_import_keeps_the_tree_and_follows_the_listing_pages(live, env, s3, tmp_path):
    url, _ = live
    key = support.new_key(env, "import-s3")
    base = f"imports/{_account_id(url, key)}/catalog/2026/"
    photos = {"a.png": support.scene_png(96, 64, 14),
              "broken.png": b"a text file named .png\n" * 4,
              "shoes/b.jpg": encode_image(synthetic_scene(90, 70, 18)[0].convert("RGB"), "JPEG"),
              "shoes/deep/c.webp": encode_image(synthetic_scene(64, 64, 16)[0], "WEBP")}
    for name, data in photos.items():
        _put(s3, base + name, data)
    # 1000 sidecar files (not images: skipped) put shoes/* on the listing's second page of 1000.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: _put(s3, f"{base}meta/{n:04d}.json", b"{}"), range(1000)))
    _put(s3, base.rstrip("/") + "-old/x.png", photos["a.png"])  # a sibling prefix: not part of the import
    out = tmp_path / "out"
    # {account} and the missing trailing / are filled in; the second prefix lies within the first (no item twice)
    source = ("s3:imports/{account}/catalog/2026", "s3:imports/{account}/catalog/2026/shoes/")
    assert _import(url, key, *source, "-o", out, "--batch-size", "2") == 1  # broken.png fails
    report = _report(out)
    assert set(report) == {f"s3:{base}{name}" for name in photos}
    assert len((out / "report.csv").read_text().splitlines()) == 1 + len(photos)
    sizes = {"a.png": (96, 64), "shoes/b.jpg": (90, 70), "shoes/deep/c.webp": (64, 64)}
    for name, size in sizes.items():
        row = report[f"s3:{base}{name}"]
        assert row["status"] == "succeeded" and row["job_id"].startswith("job_") and not row["error_code"], row
        assert row["result_path"] == "2026/" + name.rsplit(".", 1)[0] + ".png"  # the tree under the prefix
        alpha = _alpha(out / row["result_path"])
        assert alpha.shape == size[::-1] and alpha[size[1] // 2, size[0] // 2] > 200 and alpha[1, 1] < 50
    broken = report[f"s3:{base}broken.png"]
    assert (broken["status"], broken["error_code"]) == ("failed", "invalid_image") and broken["job_id"]
    with support.context(env).db() as db:
        account = db.scalar(select(Account).where(Account.name == "import-s3"))
        jobs = db.scalars(select(Job).where(Job.account_id == account.id)).all()
    assert sorted(j.input_spec["s3_key"] for j in jobs) == sorted(base + name for name in photos)
    assert len({j.batch_id for j in jobs}) == 2  # 4 items, 2 per batch
    first = _job_ids(env, "import-s3")

    # The state is lost: each batch's Idempotency-Key comes from its object keys and ETags, so no new job.
    (out / ".clearcut-import.jsonl").unlink()
    assert _import(url, key, *source, "-o", out, "--batch-size", "2") == 1
    assert _job_ids(env, "import-s3") == first
    # a.png is replaced (a new ETag): its batch is new, the other batch is found again.
    _put(s3, base + "a.png", support.scene_png(120, 80, 24))
    (out / ".clearcut-import.jsonl").unlink()
    assert _import(url, key, *source, "-o", out, "--batch-size", "2") == 1
    again = _report(out)
    assert again[f"s3:{base}a.png"]["job_id"] != report[f"s3:{base}a.png"]["job_id"]
    assert _alpha(out / "2026/a.png").shape == (80, 120)
    assert [again[f"s3:{base}{n}"]["job_id"] for n in ("shoes/b.jpg", "shoes/deep/c.webp")] == \
        [report[f"s3:{base}{n}"]["job_id"] for n in ("shoes/b.jpg", "shoes/deep/c.webp")]


def test_s3_prefix_of_another_account_is_refused_before_anything_is_sent(live, env, s3, tmp_path, capsys):
    url, _ = live
    key = support.new_key(env, "import-s3-intruder")
    victim = _account_id(url, support.new_key(env, "import-s3-victim"))
    _put(s3, f"imports/{victim}/private/a.png", support.scene_png())
    out = tmp_path / "out"
    assert _import(url, key, f"s3:imports/{victim}/private/", "-o", out) == 2
    err = capsys.readouterr().err
    assert "403 import_prefix_not_allowed" in err and f"imports/{_account_id(url, key)}/" in err, err
    assert _import(url, key, "s3://imports/{account}/", "-o", out) == 2
    assert "write s3:PREFIX" in capsys.readouterr().err
    assert not _job_ids(env, "import-s3-intruder") and not (out / "report.csv").exists()


def _job_posts(url) -> int:
    """POST /v2/jobs requests the server has answered so far (its own request counter at /metrics)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    return int(sum(float(n) for n in re.findall(
        r'^clearcut_http_requests_total\{method="POST",route="/v2/jobs",status="\d+"\} (\S+)$', text, re.M)))


def test_identical_files_anywhere_in_the_sources_are_uploaded_once(live, env, tmp_path):
    url, _ = live
    key = support.new_key(env, "import-dupes")
    folder = tmp_path / "photos"
    one, two = support.scene_png(96, 64, 14), support.scene_png(96, 64, 22)
    for name, data in {"one.png": one, "copies/one-again.png": one, "copies/deep/one-more.png": one,
                       "two.png": two}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (tmp_path / "hero.png").write_bytes(two)  # a second source, the same bytes as photos/two.png
    out = tmp_path / "out"
    posts = _job_posts(url)
    assert _import(url, key, folder, tmp_path / "hero.png", "-o", out) == 0
    assert _job_posts(url) - posts == 2  # two distinct contents, two uploads
    report = _report(out)
    # In the sources' order (the folder's sorted tree, then hero.png); the first of each content is uploaded.
    ones = ["photos/copies/deep/one-more.png", "photos/copies/one-again.png", "photos/one.png"]
    twos = ["photos/two.png", "hero.png"]
    assert set(report) == {*ones, *twos} and {r["status"] for r in report.values()} == {"succeeded"}
    assert len({report[k]["job_id"] for k in ones}) == 1 and len({report[k]["job_id"] for k in twos}) == 1
    assert report[ones[0]]["job_id"] != report[twos[0]]["job_id"]
    for group in (ones, twos):  # every item has its own result file, the one cutout of its content
        files = [(out / report[k]["result_path"]).read_bytes() for k in group]
        assert len(set(files)) == 1 and len({report[k]["result_path"] for k in group}) == len(group)
    counted = _jobs_by_external_id(env, "import-dupes")
    assert counted["jobs"] == {ones[0]: 1, twos[0]: 1} and counted["usage"] == 2

    posts = _job_posts(url)
    assert _import(url, key, folder, tmp_path / "hero.png", "-o", out) == 0  # a re-run: nothing to send
    assert _job_posts(url) == posts
    # Killed after an upload's first state line: the copies are matched by content, not uploaded again.
    state = out / ".clearcut-import.jsonl"
    lines = state.read_text().splitlines()
    state.write_text("".join(line + "\n" for line in lines if f'"{ones[0]}"' in line or f'"{twos[0]}"' in line))
    for item in ones[1:] + twos[1:]:
        (out / report[item]["result_path"]).unlink()
    assert _import(url, key, folder, tmp_path / "hero.png", "-o", out) == 0
    assert _job_posts(url) == posts
    assert {k: r["job_id"] for k, r in _report(out).items()} == {k: r["job_id"] for k, r in report.items()}
    assert all((out / report[k]["result_path"]).exists() for k in report)
    assert _jobs_by_external_id(env, "import-dupes") == counted
