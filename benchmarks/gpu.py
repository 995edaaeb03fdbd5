"""GPU throughput and latency of isnet-general: batch 1/4/16, fp32/fp16, CUDA and TensorRT providers.

Runs only where ONNX Runtime offers a GPU provider (onnxruntime-gpu on an NVIDIA machine, e.g. the
worker-gpu image); elsewhere it prints why and exits 0 without measuring anything.

    .venv/bin/python benchmarks/gpu.py [--batches 1,4,16] [--iterations 30] [--providers cuda,tensorrt]
    .venv/bin/python benchmarks/gpu.py --cpu --batches 1,2 --iterations 3   # the same table on the CPU

``--cpu`` runs the table on ONNX Runtime's CPU provider (inputs bound in host memory), so the script
itself can be exercised on a machine without a GPU; its numbers are CPU numbers, not GPU ones.

How it measures:
* The shipped model has a fixed batch of 1; ``clearcut.models.batching.dynamic_batch`` (what batching
  workers run) re-exports it with a symbolic batch axis. The graph has no Reshape, so nothing else
  pins the batch (checked: ``--check-dynamic`` compares a batch of 2 with two single runs on the CPU).
* fp16 / fp32: the published graph keeps float16 weights behind float32 inputs and outputs, so it is
  the fp16 variant; ``float32`` widens weights and casts for the fp32 variant. TensorRT runs each
  with ``trt_fp16_enable`` set to match.
* Inputs are bound once on the GPU with I/O binding, so the timings are the model's, not PCIe copies;
  outputs stay on the device. Each configuration gets warm-up runs first (TensorRT builds its engine
  then, cached under benchmarks/results/trt-cache).
* Reported per configuration: images/s, and p50/p95 latency of one batch and per image (batch latency
  divided by the batch size: what each image costs when batched).

Results: a table on stdout and benchmarks/results/gpu.json (with the GPU model from nvidia-smi).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
MODEL = "isnet-general"
PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider", "cpu": "CPUExecutionProvider"}


def gpu_name() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def dynamic_file(source: Path, target: Path) -> Path:
    """``source`` re-exported with a symbolic batch axis, saved at ``target``."""
    import onnx

    from clearcut.models.batching import dynamic_batch

    onnx.save(dynamic_batch(source), str(target))
    return target


def float32(source: Path, target: Path) -> Path:
    """An fp32 copy of an fp16-weight graph: the published isnet-general stores float16 weights behind
    float32 inputs/outputs (Cast nodes at the edges), so *it* is the fp16 variant and this is fp32."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(source))

    def widen(tensor):
        if tensor.data_type == TensorProto.FLOAT16:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name))

    for init in model.graph.initializer:
        widen(init)
    for node in model.graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT
            if attr.type == onnx.AttributeProto.TENSOR:
                widen(attr.t)
    onnx.save(model, str(target))
    return target


def session(path: Path, provider: str, fp16: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if provider == "TensorrtExecutionProvider":
        cache = RESULTS / "trt-cache"
        cache.mkdir(parents=True, exist_ok=True)
        providers = [(provider, {"trt_fp16_enable": fp16, "trt_engine_cache_enable": True,
                                 "trt_engine_cache_path": str(cache),
                                 "trt_profile_min_shapes": "input:1x3x1024x1024",
                                 "trt_profile_max_shapes": "input:16x3x1024x1024",
                                 "trt_profile_opt_shapes": "input:4x3x1024x1024"}),
                     "CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = list(dict.fromkeys([provider, "CPUExecutionProvider"]))
    sess = ort.InferenceSession(str(path), options, providers=providers)
    if sess.get_providers()[0] != provider:
        raise RuntimeError(f"{provider} did not initialise (session runs on {sess.get_providers()})")
    return sess


def measure(sess, batch: int, iterations: int, device: str = "cuda", warmup: int = 3) -> dict:
    import onnxruntime as ort

    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((batch, 3, 1024, 1024)).astype(np.float32)
    binding = sess.io_binding()
    binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, device, 0))
    for out in sess.get_outputs()[:1]:
        binding.bind_output(out.name, device)
    for _ in range(warmup):
        sess.run_with_iobinding(binding)
    times = []
    for _ in range(iterations):
        binding.synchronize_inputs()
        start = time.perf_counter()
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()
        times.append(time.perf_counter() - start)
    t = np.asarray(times)
    return {"batch": batch, "iterations": iterations, "images_per_s": round(batch * iterations / t.sum(), 2),
            "batch_p50_ms": round(float(np.percentile(t, 50)) * 1000, 2),
            "batch_p95_ms": round(float(np.percentile(t, 95)) * 1000, 2),
            "image_p50_ms": round(float(np.percentile(t, 50)) * 1000 / batch, 2),
            "image_p95_ms": round(float(np.percentile(t, 95)) * 1000 / batch, 2)}


def check_dynamic(path: Path) -> float:
    """Max abs difference between a batch of 2 and two batch-1 runs of the re-exported graph (CPU)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(1).standard_normal((2, 3, 1024, 1024)).astype(np.float32)
    both = sess.run(None, {name: x})[0]
    single = np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(2)])
    return float(np.abs(both - single).max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--providers", default="cuda,tensorrt")
    parser.add_argument("--cpu", action="store_true", help="run the table on the CPU provider (no GPU needed)")
    parser.add_argument("--check-dynamic", action="store_true",
                        help="only verify the dynamic-batch re-export on the CPU (no GPU needed)")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from clearcut.models.store import ModelStore

    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.check_dynamic:
        fp16 = dynamic_file(ModelStore().fetch(MODEL), RESULTS / f"{MODEL}-dynamic.onnx")
        fp32 = float32(fp16, RESULTS / f"{MODEL}-dynamic-fp32.onnx")
        for name, path in (("fp16 weights", fp16), ("fp32", fp32)):
            print(f"{name}: batch-2 vs 2 x batch-1 max |diff| = {check_dynamic(path):.2e}")
        return 0

    available = ort.get_available_providers()
    wanted = [PROVIDERS[p] for p in ("cpu" if args.cpu else args.providers).split(",")]
    present = [p for p in wanted if p in available]
    gpu = "none (--cpu: CPUExecutionProvider)" if args.cpu else gpu_name()
    if not present or gpu is None:
        print(f"benchmarks/gpu.py: no GPU to measure on here (ONNX Runtime {ort.__version__} offers "
              f"{', '.join(available)}; nvidia-smi: {'found' if gpu else 'not found'}). Run it where "
              "onnxruntime-gpu and an NVIDIA GPU are present, e.g. in the worker-gpu image. Nothing measured.")
        return 0
    fp16 = dynamic_file(ModelStore().fetch(MODEL), RESULTS / f"{MODEL}-dynamic.onnx")
    fp32 = float32(fp16, RESULTS / f"{MODEL}-dynamic-fp32.onnx")
    rows, notes = [], []
    device = "cpu" if args.cpu else "cuda"
    for provider in present:
        for precision in ("fp32", "fp16"):
            path = fp16 if precision == "fp16" else fp32
            try:
                sess = session(path, provider, fp16=precision == "fp16")
            except Exception as exc:  # noqa: BLE001 - report and go on with the other configurations
                notes.append(f"{provider} {precision}: {exc}")
                continue
            for batch in (int(b) for b in args.batches.split(",")):
                row = {"provider": provider, "precision": precision,
                       **measure(sess, batch, args.iterations, device)}
                rows.append(row)
                print(f"{provider:28} {precision:5} batch {batch:3}  {row['images_per_s']:8.1f} img/s  "
                      f"per image p50 {row['image_p50_ms']:7.2f} ms  p95 {row['image_p95_ms']:7.2f} ms  "
                      f"(batch p50 {row['batch_p50_ms']:.1f} ms)", flush=True)
    for note in notes:
        print("note:", note)
    report = {"gpu": gpu, "onnxruntime": ort.__version__, "model": MODEL, "rows": rows, "notes": notes}
    out = RESULTS / ("gpu-cpu.json" if args.cpu else "gpu.json")
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
