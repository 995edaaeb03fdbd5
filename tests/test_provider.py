"""Execution-provider selection and the refusal path. This machine has no GPU and the CPU build of
ONNX Runtime, so a CUDA request must be refused, never silently run on the CPU."""
import os
import subprocess
import sys

import onnxruntime as ort
import pytest

from clearcut import config
from clearcut.models.registry import spec
from clearcut.models.session import (CPU, CUDA, TENSORRT, ProviderUnavailable, SegmentationSession, default_threads,
                                     probe_provider, select_providers)
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(CUDA in ort.get_available_providers(),
                                reason="these tests check the refusal path on a machine without CUDA")


def test_auto_and_cpu_select_the_cpu_here():
    assert select_providers("auto") == [CPU]
    assert select_providers("cpu") == [CPU]


def test_selection_follows_what_onnx_runtime_offers():
    # The lists a GPU build reports; selection is a pure function of them.
    gpu_build = [TENSORRT, CUDA, CPU]
    assert select_providers("auto", gpu_build) == [CUDA, CPU]
    assert select_providers("cuda", gpu_build) == [CUDA, CPU]
    assert select_providers("tensorrt", gpu_build) == [TENSORRT, CUDA, CPU]
    assert select_providers("cpu", gpu_build) == [CPU]
    with pytest.raises(ProviderUnavailable, match="TensorrtExecutionProvider"):
        select_providers("tensorrt", [CUDA, CPU])


@pytest.mark.parametrize("requested, missing", [("cuda", CUDA), ("tensorrt", TENSORRT)])
def test_gpu_request_without_the_provider_is_refused(requested, missing):
    with pytest.raises(ProviderUnavailable) as info:
        select_providers(requested)
    err = info.value
    assert err.code == "execution_provider_unavailable" and err.status == 503
    assert f"CLEARCUT_EXECUTION_PROVIDER={requested}" in err.message and missing in err.message
    assert "CLEARCUT_EXECUTION_PROVIDER=cpu" in err.message  # says how to fix it


def test_session_refuses_onnx_runtimes_silent_cpu_fallback(model_dir):
    # Asked for CUDA on a CPU build, ONNX Runtime itself only warns and runs on the CPU; the session
    # must notice that its active providers lack CUDA and refuse.
    with pytest.raises(ProviderUnavailable, match="came up on CPUExecutionProvider"):
        SegmentationSession(spec("u2netp"), model_dir / "u2netp.onnx", providers=[CUDA, CPU], requested="cuda")


def test_session_on_cpu_reports_its_provider(model_dir):
    session = SegmentationSession(spec("u2netp"), model_dir / "u2netp.onnx", requested="cpu")
    assert session.providers == [CPU]


def test_probe_opens_a_real_session_in_a_spawned_process(model_dir):
    assert probe_provider("cpu") == [CPU]


def test_invalid_setting_names_the_variable():
    with pytest.raises(ValueError, match="CLEARCUT_EXECUTION_PROVIDER='gpu' is invalid"):
        config.get("CLEARCUT_EXECUTION_PROVIDER", {"CLEARCUT_EXECUTION_PROVIDER": "gpu"})
    assert config.get("CLEARCUT_EXECUTION_PROVIDER", {"CLEARCUT_EXECUTION_PROVIDER": "CUDA"}) == "cuda"


def test_cpu_threads_split_the_cores_between_worker_processes(monkeypatch):
    from clearcut.models.session import available_cpus

    monkeypatch.delenv("CLEARCUT_ORT_THREADS", raising=False)
    for concurrency in (1, 2, 4):
        monkeypatch.setenv("CLEARCUT_WORKER_CONCURRENCY", str(concurrency))
        assert default_threads() == max(1, available_cpus() // concurrency)
    monkeypatch.setenv("CLEARCUT_ORT_THREADS", "3")
    assert default_threads() == 3


@pytest.mark.parametrize("requested", ["cuda", "tensorrt"])
def test_worker_refuses_to_start_when_the_gpu_provider_is_missing(service_env, requested, tmp_path):
    """A real ``celery worker`` with a GPU provider requested exits non-zero with the clear message
    (and never starts consuming)."""
    env = {**os.environ, **service_env, "CLEARCUT_EXECUTION_PROVIDER": requested,
           "CLEARCUT_BROKER_PREFIX": service_env["CLEARCUT_BROKER_PREFIX"] + "provider:"}
    proc = subprocess.run([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "gpu",
                           "--concurrency", "1", "-n", f"refuse-{requested}@%h", "--without-gossip",
                           "--without-mingle"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 78, output
    assert f"refusing to start: CLEARCUT_EXECUTION_PROVIDER={requested}" in output
    assert "CUDAExecutionProvider" in output or "TensorrtExecutionProvider" in output
    assert "ready." not in output   # the consumer never came up


def test_worker_refuses_to_start_without_its_model(service_env, tmp_path):
    """An empty or unreadable model dir is one clear refusal at start (exit 78), not a worker that
    takes jobs and fails each of them."""
    env = {**os.environ, **service_env, "CLEARCUT_MODEL_DIR": str(tmp_path / "no-models"),
           "CLEARCUT_DEFAULT_MODEL": "u2netp",
           "CLEARCUT_BROKER_PREFIX": service_env["CLEARCUT_BROKER_PREFIX"] + "nomodel:"}
    proc = subprocess.run([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "cpu",
                           "--concurrency", "1", "-n", "nomodel@%h", "--without-gossip", "--without-mingle"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 78, output
    assert "refusing to start" in output and "clearcut models fetch u2netp" in output
    assert "ready." not in output
