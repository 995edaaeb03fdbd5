"""``clearcut dev`` end to end: starts every service, serves health, restarts a killed worker,
and leaves no process behind after Ctrl-C."""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from clearcut.local.services import SeaweedPorts, free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(300)


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _health(url):
    try:
        return requests.get(f"{url}/v2/health", timeout=10)
    except requests.RequestException:
        return None


def _worker_children(pid):
    found = []
    for p in psutil.Process(pid).children():
        try:  # a child that just exited may be a zombie until the supervisor reaps it
            if p.status() != psutil.STATUS_ZOMBIE and "celery" in " ".join(p.cmdline()):
                found.append(p)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return found


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _readme_curl_works(url, key, tmp_path):
    """The README's curl example, verbatim but for the host, key and file names."""
    from tests.conftest import encode_image, synthetic_scene

    image, mask = synthetic_scene(320, 240, radius=60)
    (tmp_path / "photo.jpg").write_bytes(encode_image(image, "JPEG", quality=95))
    subprocess.run(["curl", "-sS", "-f", f"{url}/v2", "-H", f"x-api-key: {key}",
                    "-F", f"image_file=@{tmp_path / 'photo.jpg'}", "-F", "format=png",
                    "-o", str(tmp_path / "cutout.png")], check=True, timeout=120)
    from PIL import Image
    import numpy as np

    alpha = np.asarray(Image.open(tmp_path / "cutout.png"))[:, :, 3] > 127
    assert (alpha & mask).sum() / (alpha | mask).sum() > 0.9


def test_dev_runs_restarts_and_stops_cleanly(tmp_path):
    api_port, redis_port, s3_port = free_port(), free_port(), SeaweedPorts.free().s3
    keep = ("CLEARCUT_MODEL_DIR", "CLEARCUT_DEFAULT_MODEL")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARCUT_") or k in keep}
    stderr_path = tmp_path / "dev.err"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clearcut.cli", "dev", "--data-dir", str(tmp_path / "data"),
             "--api-port", str(api_port), "--s3-port", str(s3_port), "--redis-port", str(redis_port)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen: dict[int, psutil.Process] = {}
    try:
        def printed_url():
            while not lines.empty():
                match = re.search(r"running at (http://\S+)", lines.get())
                if match:
                    return match.group(1)
            assert proc.poll() is None, stderr_path.read_text()
        url = _wait(printed_url, 120, "the printed URL")
        assert url == f"http://127.0.0.1:{api_port}"
        demo_key = _wait(lambda: (m := re.search(r"demo key: (cc_live_\S+)", lines.get(timeout=30))) and m.group(1),
                         60, "the demo key")

        response = _wait(lambda: (r := _health(url)) is not None and r.status_code == 200 and r, 120, "health 200")
        body = response.json()
        assert body["status"] == "ok"
        assert body["checks"]["database"]["backend"] == "sqlite"
        assert body["checks"]["storage"]["endpoint"] == f"http://127.0.0.1:{s3_port}"

        _readme_curl_works(url, demo_key, tmp_path)

        seen.update({p.pid: p for p in psutil.Process(proc.pid).children(recursive=True)})
        [worker] = _worker_children(proc.pid)
        worker.send_signal(signal.SIGKILL)
        restarted = _wait(lambda: [p for p in _worker_children(proc.pid) if p.pid != worker.pid], 60,
                          "a restarted worker")
        assert restarted
        _wait(lambda: (r := _health(url)) is not None and r.status_code == 200, 120, "health 200 after restart")
        assert "worker: killed by SIGKILL" in stderr_path.read_text()

        seen.update({p.pid: p for p in psutil.Process(proc.pid).children(recursive=True)})
        assert len(seen) >= 6   # weed, valkey wrapper + server, worker (+ pool), gunicorn (+ worker)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0
        leftovers = [p for p in seen.values() if not _gone(p)]
        assert not leftovers, [p.cmdline() for p in leftovers]
        assert "all processes stopped" in stderr_path.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for child in seen.values():   # psutil checks the create time: never a reused pid
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
