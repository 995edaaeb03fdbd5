"""Where an int8 variant loses precision: activation SQNR of ``NAME-int8`` against the float graph, tensor
by tensor, on calibration photos (never evaluation images), with ONNX Runtime's ``qdq_loss_debug``.

    python -m clearcut.models.quant_debug NAME [--images 1] [--top 25]

Prints the tensors with the lowest SQNR (dB; signal = float activation, noise = int8 minus float), in
two lists: lowest overall (error accumulated up to there) and, in graph order, the stage outputs, so
that the layer where the error starts shows. Tensors that only feed a ReLU are skipped: the quantizer
folds those ReLUs away, so their int8 counterparts are already clipped at 0. The findings are what
``quantize.outlier_bias_nodes`` and ``quantize.RECIPES[...]["float_nodes"]`` keep in float.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def activation_sqnr(name: str, images: int = 1, store=None) -> list[tuple[float, str, str]]:
    """(SQNR dB, op type, node name) for every compared tensor, in graph order."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations, compute_activation_error,
                                                         create_activation_matching,
                                                         modify_model_output_intermediate_tensors)

    from clearcut.models import quantize
    from clearcut.models.registry import spec
    from clearcut.models.store import ModelStore

    store = store or ModelStore()
    base = spec(quantize.base_name(name))
    directory = quantize.ensure_calibration_images()
    paths = [p for p in quantize.list_images(directory) if p.name not in quantize.CHECK_IMAGES][:images]
    with tempfile.TemporaryDirectory(dir=store.directory) as tmp:
        tmp = Path(tmp)
        graph = quantize.prepare(store.path(base.name), tmp / "plain.onnx", tmp / "prepared.onnx").graph
        feed = [{graph.input[0].name: x} for x in quantize.CalibrationSet(paths, 1).inputs(base)]
        acts = []
        for source, target in ((tmp / "prepared.onnx", tmp / "float-all.onnx"),
                               (store.path(quantize.int8_name(base.name)), tmp / "int8-all.onnx")):
            modify_model_output_intermediate_tensors(str(source), str(target))
            acts.append(collect_activations(str(target), iter(feed)))
        errors = compute_activation_error(create_activation_matching(acts[1], acts[0]))
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node.op_type)
    out = []
    for node in graph.node:
        for tensor in node.output:
            if consumers.get(tensor) == ["Relu"] or "xmodel_err" not in errors.get(tensor, {}):
                continue
            out.append((float(errors[tensor]["xmodel_err"]), node.op_type, node.name))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    rows = activation_sqnr(args.name, args.images)
    print("lowest SQNR:")
    for sqnr, op, node in sorted(rows)[: args.top]:
        print(f"  {sqnr:7.1f} dB  {op:10} {node}")
    print("stage outputs (Add) in graph order:")
    for sqnr, op, node in rows:
        if op == "Add":
            print(f"  {sqnr:7.1f} dB  {node}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
