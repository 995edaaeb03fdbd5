"""Batched inference (CPU here; the CUDA I/O-binding path is exercised in its CPU form): the dynamic-batch
graph, the micro-batcher under concurrent callers, errors, and a real threads-pool worker batching jobs."""
import io
import json
import threading

import numpy as np
import pytest
import requests
from PIL import Image

from clearcut.models import batching
from clearcut.models.registry import spec
from clearcut.models.session import SegmentationSession, available_cpus, default_threads, preprocess
from clearcut.models.store import ModelStore
from clearcut.local.services import free_port
from tests import async_support as support
from tests.async_support import env  # noqa: F401 - shared module fixture

pytestmark = pytest.mark.timeout(300)
MODEL = "u2netp"


def _session(model_dir, batch_size, wait_ms=10.0):
    return SegmentationSession(spec(MODEL), ModelStore(model_dir).path(MODEL), threads=1,
                               batch_size=batch_size, max_wait_ms=wait_ms)


def _proxies(n: int) -> list[np.ndarray]:
    """Different images of longer side 320 (u2netp's input): noise of several shapes plus a disc."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        h, w = (320, 120 + 30 * i) if i % 2 else (180 + 30 * i, 320)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        yy, xx = np.mgrid[0:h, 0:w]
        image[(yy - h // 2) ** 2 + (xx - w // 3) ** 2 < (40 + 10 * i) ** 2] = (200, 30, 40)
        out.append(image)
    return out


@pytest.fixture(scope="module")
def single(model_dir):
    return _session(model_dir, 1)


def test_dynamic_batch_graph_is_derived_in_memory(model_dir):
    before = sorted(p.name for p in model_dir.iterdir())
    graph = batching.dynamic_batch(model_dir / spec(MODEL).filename)
    for value in list(graph.graph.input) + list(graph.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert not graph.graph.value_info
    session = _session(model_dir, 4)
    try:
        assert session._session.get_inputs()[0].shape[0] == "batch"
        assert sorted(p.name for p in model_dir.iterdir()) == before   # nothing written to the store
        ModelStore(model_dir).path(MODEL)   # the source still verifies
    finally:
        session.batcher.close()


def test_batch_size_one_runs_the_published_graph_directly(single):
    assert single.batcher is None and single._session.get_inputs()[0].shape[0] == 1


def test_a_batch_equals_single_runs(model_dir, single):
    batched = _session(model_dir, 4)
    try:
        squares = [preprocess(single.model, np.asarray(Image.fromarray(p).resize((320, 320))))
                   for p in _proxies(4)]
        together = batched.run(np.concatenate(squares))
        assert together.shape == (4, 1, 320, 320)
        for i, x in enumerate(squares):
            assert np.abs(together[i] - single.run(x)[0]).max() < 1e-5
        # The four outputs differ from each other: each slice is its own image's.
        assert min(np.abs(together[i] - together[j]).mean() for i in range(4) for j in range(i)) > 1e-3
    finally:
        batched.batcher.close()


def test_io_binding_path_matches_plain_run(model_dir, single):
    """The CUDA branch binds the input on the device; the same code with ``cpu`` runs here."""
    x = preprocess(single.model, np.asarray(Image.fromarray(_proxies(1)[0]).resize((320, 320))))
    plain = single.run(x)
    single.io_device = "cpu"
    try:
        bound = single.run(x)
    finally:
        single.io_device = None
    assert bound.shape == plain.shape and np.abs(bound - plain).max() < 1e-6


def _concurrently(fn, args):
    results, errors = [None] * len(args), [None] * len(args)
    barrier = threading.Barrier(len(args))

    def call(i):
        barrier.wait()
        try:
            results[i] = fn(args[i])
        except Exception as exc:  # noqa: BLE001 - collected for the assertions
            errors[i] = exc
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a caller never got its result"
    return results, errors


def test_concurrent_callers_are_batched_and_get_their_own_results(model_dir, single):
    proxies = _proxies(6)
    expected = [single.predict(p) for p in proxies]
    batched = _session(model_dir, 4, wait_ms=1000)
    try:
        results, errors = _concurrently(batched.predict, proxies)
        assert errors == [None] * 6
        for got, want, proxy in zip(results, expected, proxies):
            assert got.shape == proxy.shape[:2] and got.dtype == np.float32
            assert np.abs(got - want).max() < 1e-5
        sizes = batched.batcher.sizes
        assert sum(size * count for size, count in sizes.items()) == 6
        assert max(sizes) > 1 and max(sizes) <= 4, sizes
    finally:
        batched.batcher.close()


def test_an_error_reaches_every_caller_of_its_batch_and_the_batcher_goes_on(model_dir, single):
    batched = _session(model_dir, 4, wait_ms=2000)
    try:
        good = preprocess(single.model, np.zeros((320, 320, 3), np.uint8))[0]
        bad = good.astype(np.float64)   # stacks into a float64 batch, which the graph refuses
        results, errors = _concurrently(batched.batcher.submit, [good, good, good, bad])
        assert results == [None] * 4
        assert all(e is not None and "float" in str(e).lower() for e in errors), errors
        assert batched.batcher.sizes == {4: 1}
        proxy = _proxies(1)[0]
        assert np.abs(batched.predict(proxy) - single.predict(proxy)).max() < 1e-5
    finally:
        batched.batcher.close()


def test_a_lone_request_is_served_after_the_wait(model_dir, single):
    batched = _session(model_dir, 8, wait_ms=50)
    try:
        proxy = _proxies(1)[0]
        results, errors = _concurrently(batched.predict, [proxy])
        assert errors == [None] and np.abs(results[0] - single.predict(proxy)).max() < 1e-5
        assert batched.batcher.sizes == {1: 1}
    finally:
        batched.batcher.close()


def test_batching_selects_the_threads_pool_and_one_process_of_threads(monkeypatch):
    from worker.celery_app import create_celery, worker_pool

    assert worker_pool({}) == "prefork"
    assert worker_pool({"CLEARCUT_INFERENCE_BATCH_SIZE": "4"}) == "threads"
    app = create_celery("redis://127.0.0.1:1/0", environ={"CLEARCUT_INFERENCE_BATCH_SIZE": "4"})
    assert app.conf.worker_pool == "threads"
    assert create_celery("redis://127.0.0.1:1/0", environ={}).conf.worker_pool == "prefork"
    monkeypatch.setenv("CLEARCUT_ORT_THREADS", "0")
    monkeypatch.setenv("CLEARCUT_WORKER_CONCURRENCY", "4")
    monkeypatch.setenv("CLEARCUT_INFERENCE_BATCH_SIZE", "4")
    assert default_threads() == available_cpus()   # one process: its session gets every core


# -- a real worker ----------------------------------------------------------------------------------

def _alpha(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))[:, :, 3].astype(int)


def test_threads_pool_worker_batches_concurrent_jobs(env, tmp_path_factory, monkeypatch):  # noqa: F811
    from clearcut.pipeline import process

    queue = f"batching-{support.ASYNC_QUEUE}"   # only this test's worker consumes it
    monkeypatch.setenv("CLEARCUT_ASYNC_QUEUE", queue)
    app = support.make_app(env)
    client = app.test_client()
    key = support.new_key(env, "batching")
    images = [support.scene_png(w, h, r) for w, h, r in ((96, 64, 20), (80, 80, 30), (120, 60, 15), (64, 96, 25))]
    log_dir = tmp_path_factory.mktemp("batching-worker")
    metrics_port = free_port()
    extra = {"CLEARCUT_INFERENCE_BATCH_SIZE": "4", "CLEARCUT_INFERENCE_BATCH_WAIT_MS": "1500",
             "CLEARCUT_LOG_LEVEL": "DEBUG", "CLEARCUT_LOG_FORMAT": "json", "CLEARCUT_ASYNC_QUEUE": queue,
             "CLEARCUT_WORKER_METRICS_PORT": str(metrics_port)}
    with support.worker(env, log_dir, queues=queue, concurrency=4, extra=extra):
        ids = []
        for data in images:
            r = client.post("/v2/jobs", headers={"x-api-key": key},
                            data={"image_file": (io.BytesIO(data), "in.png"), "cache": "false"})
            assert r.status_code == 202, r.get_data(as_text=True)
            ids.append(r.get_json()["id"])
        done = [support.wait_job(client, key, job_id, timeout=120) for job_id in ids]
        assert [d["status"] for d in done] == ["succeeded"] * 4, done
        for job_id, data in zip(ids, images):
            result = client.get(f"/v2/jobs/{job_id}/result", headers={"x-api-key": key})
            assert result.status_code == 200
            got, want = _alpha(result.data), _alpha(process(data).data)
            assert got.shape == want.shape and np.abs(got - want).max() <= 1
            h, w = got.shape
            assert got[h // 2, w // 2] > 200 and got[1, 1] < 50   # own disc kept, background removed
        log = (log_dir / next(p.name for p in log_dir.iterdir() if p.suffix == ".log")).read_text()
        scraped = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    sizes = [json.loads(line)["batch_size"] for line in log.splitlines()
             if line.startswith("{") and '"inference batch"' in line]
    assert "(thread)" in log, "the worker did not run the threads pool"   # banner: concurrency: 4 (thread)
    assert sum(sizes) == 4 and max(sizes) > 1, sizes
    # the same batches on the worker's Prometheus endpoint
    samples = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in scraped.splitlines()
               if line.startswith("clearcut_inference_batch_size_") and 'model="u2netp"' in line
               and not line.startswith("clearcut_inference_batch_size_bucket")}
    assert samples == {"clearcut_inference_batch_size_count": len(sizes), "clearcut_inference_batch_size_sum": 4.0}
