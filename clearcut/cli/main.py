"""The ``clearcut`` command: models, remove, dev, config."""
from __future__ import annotations

import argparse
import json
import sys


def _models_fetch(args) -> int:
    from clearcut.models.registry import BUILTIN
    from clearcut.models.store import ModelStore

    store = ModelStore()
    for name in args.names or list(BUILTIN):
        path = store.fetch(name, force=args.force)
        print(f"{name}: {path} (sha256 verified)")
    return 0


def _models_quantize(args) -> int:
    from clearcut.models import cpu, quantize

    for name in args.names:
        recipe = quantize.build(name, calibration=args.calibration, method=args.method,
                                percentile=args.percentile, images=args.images, views=args.views,
                                reduce_range=args.reduce_range)
        check = recipe["quality_check"]
        print(f"{recipe['name']}: sha256 {recipe['sha256']}, quality check on "
              f"{check.get('int8_kernels', 'unrecorded')} int8 kernels "
              f"{'passed' if cpu.check_applies(check) else 'NOT passed (auto precision keeps float)'}")
    return 0


def _models_list(args) -> int:
    from clearcut.models import cpu
    from clearcut.models.store import ModelStore

    rows = ModelStore().describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':15} {'cached':6} {'size':>10} {'input':>5} {'norm':8} {'sha256':16} source / licence")
    for r in rows:
        size = f"{r['size_bytes'] / 1e6:.1f} MB" if r["size_bytes"] else "-"
        print(f"{r['name']:15} {'yes' if r['cached'] else 'no':6} {size:>10} {r['input_size']:>5} "
              f"{r['normalisation']:8} {r['sha256'][:16]} {r['source']} / {r['licence']}")
        if "used_by_auto_here" in r:
            print(f"{'':15} quality check {'passed' if r['quality_check_passed'] else 'NOT passed'} on "
                  f"{r['quality_check_int8_kernels'] or 'unrecorded'} int8 kernels (this CPU: {cpu.int8_kernels()}); "
                  f"CLEARCUT_MODEL_PRECISION=auto {'uses it' if r['used_by_auto_here'] else 'keeps float'} here")
    return 0


def _config(args) -> int:
    from clearcut import config

    print(config.markdown_table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clearcut", description="Self-hosted background removal.")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="fetch and list segmentation models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    fetch = models_sub.add_parser("fetch", help="fetch and verify models (default: all built-in)")
    fetch.add_argument("names", nargs="*")
    fetch.add_argument("--force", action="store_true", help="download again even if cached")
    fetch.set_defaults(func=_models_fetch)
    quant = models_sub.add_parser("quantize", help="build calibrated static int8 variants (NAME-int8)")
    quant.add_argument("names", nargs="+")
    quant.add_argument("--calibration", help="folder of calibration photos (default: scikit-image's free samples)")
    quant.add_argument("--method", choices=["minmax", "percentile", "entropy"],
                       help="calibration method (default: the model's measured recipe, see docs/int8.md)")
    quant.add_argument("--percentile", type=float, help="with --method percentile (default 99.99)")
    quant.add_argument("--images", type=int, help="use only the first N calibration images")
    quant.add_argument("--views", type=int, help="views per image: full, mirrored, then crops (max 6; default: "
                                                "the model's recipe)")
    quant.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                       help="7-bit weights (default: on where this CPU's int8 kernels saturate, i.e. AVX2 "
                            "without VNNI; see docs/int8.md)")
    quant.set_defaults(func=_models_quantize)
    listing = models_sub.add_parser("list", help="list known models")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_models_list)

    cfg = sub.add_parser("config", help="print the configuration table (markdown)")
    cfg.set_defaults(func=_config)

    from clearcut.cli import admin, importer, remove, webhooks
    from clearcut.local import dev

    remove.register(sub)
    importer.register(sub)
    admin.register(sub)
    webhooks.register(sub)
    dev.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from clearcut.errors import ClearcutError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except ClearcutError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
