"""Photoroom Image Editing (``/v2/edit``) fields mapped onto Clearcut's ``Options`` (the table in docs/compat.md).

``classify`` sorts the request's field names: supported ones come back under Photoroom's spelling;
generative or otherwise unimplemented ones are ``unsupported_option`` and anything else
``unknown_option`` (both 400, naming the field). ``plan`` turns the values into the job's options plus
what the adapter composites afterwards (a background image, a colour with alpha).

Photoroom's positioning model maps onto Clearcut's placement options: ``margin`` is a band at the
canvas's edges, ``padding`` is inside it (its fractions are of what the margin leaves), and the
reference box (the subject, or the whole photo for ``referenceBox=originalImage``) is fitted or made
to cover (``scaling``) what remains, then aligned. Photoroom fits the subject by default, even on an
``originalImage`` canvas, so every plan sets ``scale=100``.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from app.compat.fields import FIELDS, INPUTS, UnsupportedOption
from clearcut.errors import InvalidOption
from clearcut.options import MAX_CANVAS_SIDE, Margin, Options, parse, parse_bool, parse_canvas, parse_color

SIDES = ("Top", "Right", "Bottom", "Left")  # Margin's field order
SUPPORTED = (
    "imageFile", "imageUrl", "removeBackground", "background.color", "background.imageUrl", "background.imageFile",
    "background.scaling", "outputSize", "maxWidth", "maxHeight", "padding", *(f"padding{s}" for s in SIDES),
    "margin", *(f"margin{s}" for s in SIDES), "scaling", "horizontalAlignment", "verticalAlignment", "referenceBox",
    "ignorePaddingAndSnapOnCroppedSides", "shadow.mode", "export.format", "export.dpi", "preserveMetadata",
)
_GENERATIVE = "an AI model generates it; Clearcut renders only deterministic edits"
_NOT_BUILT = "not implemented by Clearcut"
# Exact names, then whole feature groups (any name under the prefix).
UNSUPPORTED = {
    "background.prompt": _GENERATIVE, "background.negativePrompt": _GENERATIVE,
    "background.expandPrompt": _GENERATIVE, "background.seed": _GENERATIVE,
    "templateId": "Photoroom templates live in Photoroom's app", "layers": _NOT_BUILT,
    "keepExistingAlphaChannel": "Clearcut always intersects the model's matte with the input's own transparency",
    "shadow.directionOverride": _GENERATIVE, "shadow.intensityOverride": _GENERATIVE,
    "shadow.softnessOverride": _GENERATIVE, "shadow.spreadOverride": _GENERATIVE,
    "shadow.subjectPoseOverride": _GENERATIVE,
}
UNSUPPORTED_GROUPS = {
    "background.guidance.": _GENERATIVE, "background.expandPrompt.": _GENERATIVE,
    "background.blur.": _NOT_BUILT, "beautify.": _GENERATIVE, "describeAnyChange.": _GENERATIVE,
    "editWithAI.": _GENERATIVE, "expand.": _GENERATIVE, "uncrop.": _GENERATIVE, "upscale.": _GENERATIVE,
    "lighting.": _GENERATIVE, "textRemoval.": _GENERATIVE, "flatLay.": _GENERATIVE,
    "ghostMannequin.": _GENERATIVE, "virtualModel.": _GENERATIVE, "imageFromPrompt.": _GENERATIVE,
    "segmentation.": "text-guided segmentation is " + _NOT_BUILT, "outline.": _NOT_BUILT, "layers.": _NOT_BUILT,
}
# Shadow modes -> (Clearcut shadow, softness or None for the default); see docs/compat.md for why.
SHADOWS = {"ai.soft": ("contact", None), "ai.preset-soft": ("contact", None), "ai.hard": ("drop", 15.0),
           "ai.preset-hard": ("drop", 15.0), "ai.floating": ("floating", None)}
FORMATS = {"png": "png", "jpeg": "jpg", "jpg": "jpg", "webp": "webp"}
# The documented names under those groups, for messages in Photoroom's spelling (request names arrive lower-cased).
GROUP_NAMES = (
    "background.guidance.imageUrl", "background.guidance.imageFile", "background.guidance.scale",
    "background.expandPrompt.mode", "background.blur.mode", "background.blur.radius", "beautify.mode", "beautify.seed",
    *(f"{g}.{n}" for g in ("describeAnyChange", "editWithAI") for n in ("mode", "prompt", "seed")),
    "expand.mode", "expand.seed", "uncrop.mode", "uncrop.seed", "upscale.mode", "lighting.mode", "textRemoval.mode",
    *(f"{g}.{n}" for g in ("flatLay", "ghostMannequin") for n in ("mode", "prompt", "size")),
    *(f"virtualModel.{n}" for n in ("mode", "model", "pose", "prompt", "quality", "scene", "size",
                                    "additionalProductImages")),
    "imageFromPrompt.prompt", "imageFromPrompt.seed", "imageFromPrompt.size", "segmentation.mode",
    "segmentation.prompt", "segmentation.negativePrompt", "outline.color", "outline.width", "outline.blurRadius",
)
_BY_KEY = {name.lower(): name for name in (*SUPPORTED, *UNSUPPORTED, *GROUP_NAMES)}
_OTHER_VENDOR_NAMES = {"image_file": "imageFile", "image_url": "imageUrl", "bg_color": "background.color",
                       "format": "export.format", "bg_image_url": "background.imageUrl", "dpi": "export.dpi",
                       "crop": "outputSize=croppedSubject"}


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name.replace(".", "_")).lower()


def _invalid(name: str, message: str) -> InvalidOption:
    return InvalidOption(f"{name} {message}", code=f"invalid_{snake(name)}", option=name)


def _unknown(key: str) -> InvalidOption:
    use = _OTHER_VENDOR_NAMES.get(key)
    if use or any(key in FIELDS[v] or key in INPUTS[v] for v in FIELDS):
        hint = f"send {use!r} instead" if use else "/v2/edit has no equivalent"
        return InvalidOption(f"{key!r} is a field of another API, not of Photoroom /v2/edit: {hint}",
                             code="mixed_vendor_fields", field=key, use=use)
    close = difflib.get_close_matches(key, list(_BY_KEY), n=1, cutoff=0.75)
    suggestion = f"; did you mean {_BY_KEY[close[0]]!r}?" if close else ""
    return InvalidOption(f"unknown field {key!r} for Photoroom /v2/edit{suggestion} (docs/compat.md lists the "
                         "accepted fields)", code="unknown_option", field=key)


def classify(fields: dict[str, Any]) -> dict[str, Any]:
    """{Photoroom name: value} for the non-empty supported fields; refuses unsupported and unknown ones."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        lowered = key.lower()
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # an empty field means the default
        name = _BY_KEY.get(lowered)
        group = next((g for g in UNSUPPORTED_GROUPS if lowered.startswith(g.lower())), None)
        if group is not None or name in UNSUPPORTED:
            why = UNSUPPORTED_GROUPS[group] if group else UNSUPPORTED[name]
            shown = name or group + key[len(group):]
            raise UnsupportedOption(f"{shown} is not supported by Clearcut ({why}); remove the field", option=shown)
        if name is None:
            raise _unknown(lowered)
        if isinstance(value, (list, dict)):
            raise _invalid(name, f"must be a single value, not a {type(value).__name__}")
        out[name] = value
    return out


# -- values --------------------------------------------------------------------------------------------

_SPACING = re.compile(r"(\d+(?:\.\d+)?)(%|px)?")


def spacing(name: str, value: Any) -> tuple[float, bool]:
    """(amount, relative): a fraction 0-0.49, a percentage 0%-49% (as a fraction) or pixels (0-5000px)."""
    text = "" if isinstance(value, bool) else str(value).strip().lower()
    match = _SPACING.fullmatch(text)
    if match:
        number, unit = float(match.group(1)), match.group(2)
        if unit == "px" and number <= 5000:
            return number, False
        if unit == "%" and number <= 49:
            return number / 100, True
        if unit is None and number <= 0.49:
            return number, True
    raise _invalid(name, f"must be a number from 0 to 0.49, a percentage from 0% to 49% or pixels up to 5000px "
                         f"(e.g. 0.1, 10%, 100px); got {value!r}")


def sides(base: str, values: dict[str, Any]) -> Margin:
    """padding / margin and their per-side overrides as one Margin (zero sides fit either unit)."""
    amounts, units = [], {}
    general = spacing(base, values[base]) if base in values else (0.0, True)
    for side in SIDES:
        name = f"{base}{side}"
        amount, relative = spacing(name, values[name]) if name in values else general
        amounts.append(amount)
        if amount:
            units[name if name in values else base] = relative
    if len(set(units.values())) > 1:
        px = [n for n, rel in units.items() if not rel]
        rel = [n for n, rel in units.items() if rel]
        raise _invalid(base, f"sides must all be fractions/percentages or all pixels; {', '.join(px)} in px and "
                             f"{', '.join(rel)} relative: convert one group")
    return Margin(*amounts, relative=all(units.values())) if units else Margin()


def color(name: str, value: Any) -> tuple[int, int, int, int] | None:
    """(r, g, b, a), or None for transparent: hex with or without '#' (3, 4, 6 or 8 digits) or a CSS name."""
    text = str(value).strip()
    if text.lower() == "transparent":
        return None
    match = re.fullmatch(r"#?([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})", text)
    if match:
        digits = match.group(1)
        if len(digits) in (3, 4):
            digits = "".join(c * 2 for c in digits)
        rgba = [int(digits[i:i + 2], 16) for i in range(0, len(digits), 2)]
        return (*rgba, 255)[:4] if len(rgba) == 3 else tuple(rgba)
    try:
        return (*parse_color(text), 255)
    except InvalidOption:
        raise _invalid(name, f"must be a hex colour (FF0000, FF000080, #fff), a CSS name (red) or transparent; "
                             f"got {value!r}") from None


def whole(name: str, value: Any, low: int, high: int) -> int:
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None:
        try:
            number = float(str(value).strip())
        except ValueError:
            number = float("nan")
    if not (low <= number <= high and float(number).is_integer()):
        raise _invalid(name, f"must be a whole number from {low} to {high}; got {value!r}")
    return int(number)


def choice(name: str, value: Any, allowed: dict[str, Any]) -> Any:
    key = str(value).strip().lower()
    for option, result in allowed.items():
        if option.lower() == key:
            return result
    raise _invalid(name, f"must be one of {', '.join(allowed)}; got {value!r}")


def boolean(name: str, value: Any) -> bool:
    try:
        return parse_bool(name, value)
    except InvalidOption as exc:
        raise InvalidOption(exc.message, code="invalid_boolean", option=name) from None


# -- the plan ------------------------------------------------------------------------------------------

@dataclass
class Edit:
    options: Options                                    # the job's options
    output_format: str                                  # png, jpg or webp (export.format)
    dpi: int | None = None                              # applied by the adapter when it re-encodes
    composite_color: tuple[int, int, int, int] | None = None  # a colour the adapter lays under the cutout
    background_url: str | None = None
    background_file: bool = False
    background_fit: str = "cover"                       # background.scaling: fill -> cover, fit -> contain

    @property
    def composites(self) -> bool:
        return self.composite_color is not None or self.background_url is not None or self.background_file


def _refuse_with_kept_background(values: dict[str, Any], background_file: bool) -> None:
    given = [n for n in ("background.imageUrl", "referenceBox", "ignorePaddingAndSnapOnCroppedSides") if n in values]
    if background_file:
        given.insert(0, "background.imageFile")
    if given:
        raise _invalid(given[0], "can't be provided when removeBackground is false (the photo keeps its own "
                                 "background and is laid out whole)")


def _canvas(values: dict[str, Any]) -> str:
    size = values.get("outputSize", "auto")
    key = str(size).strip()
    named = {"auto": "original", "originalimage": "original", "croppedsubject": "subject"}.get(key.lower())
    if named is None:
        if not re.fullmatch(r"\d+x\d+", key.lower()):
            raise _invalid("outputSize", f"must be auto, originalImage, croppedSubject or WIDTHxHEIGHT such as "
                                         f"1000x1000; got {size!r}")
        try:
            named = parse_canvas(key.lower())
        except InvalidOption:
            raise _invalid("outputSize", f"must have each side from 1 to {MAX_CANVAS_SIDE} px and at most 50 MP in "
                                         f"all; got {size!r}") from None
    if named not in ("original", "subject") and ({"maxWidth", "maxHeight"} & set(values)):
        raise _invalid("maxWidth" if "maxWidth" in values else "maxHeight",
                       "can only be provided when outputSize is auto, originalImage or croppedSubject")
    return named


def plan(values: dict[str, Any], *, background_file: bool) -> Edit:
    """The job's options and the adapter's compositing for already-classified Photoroom fields."""
    keep = not boolean("removeBackground", values.get("removeBackground", True))
    if keep:
        _refuse_with_kept_background(values, background_file)
    if "background.imageUrl" in values and background_file:
        raise _invalid("background.imageUrl", "and background.imageFile are exclusive: send one of them")
    has_image = background_file or "background.imageUrl" in values
    if "background.scaling" in values and not has_image:
        raise _invalid("background.scaling", "can only be provided with background.imageUrl or background.imageFile")
    fmt = choice("export.format", values.get("export.format", "png"), FORMATS)
    dpi = whole("export.dpi", values["export.dpi"], 72, 1200) if "export.dpi" in values else None
    if str(values.get("preserveMetadata", "never")).strip().lower() != "never":
        raise UnsupportedOption(f"preserveMetadata={values['preserveMetadata']!r} is not supported by Clearcut "
                                "(outputs carry no metadata of the input); omit it or send 'never'",
                                option="preserveMetadata")
    rgba = color("background.color", values["background.color"]) if "background.color" in values else None
    if rgba is not None and rgba[3] == 0:
        rgba = None  # fully transparent: the same as no colour
    if rgba is not None and rgba[3] < 255 and fmt == "jpg":
        raise _invalid("background.color", "has transparency, which JPEG cannot store: use export.format png or webp")

    horizontal = choice("horizontalAlignment", values.get("horizontalAlignment", "center"),
                        {"left": 0, "center": 50, "right": 100})
    vertical = choice("verticalAlignment", values.get("verticalAlignment", "center"),
                      {"top": 0, "center": 50, "bottom": 100})
    snap = not keep and boolean("ignorePaddingAndSnapOnCroppedSides",
                                values.get("ignorePaddingAndSnapOnCroppedSides", True))
    # An explicit alignment turns snapping off on its axis, as Photoroom documents.
    snap_x, snap_y = snap and "horizontalAlignment" not in values, snap and "verticalAlignment" not in values
    snap_edges = {(True, True): "all", (True, False): "horizontal", (False, True): "vertical"}.get(
        (snap_x, snap_y), "none")
    shadow, softness = "none", None
    if "shadow.mode" in values:
        mode = str(values["shadow.mode"]).strip().lower()
        if mode == "ai.auto-with-overrides":
            raise UnsupportedOption("shadow.mode=ai.auto-with-overrides is not supported by Clearcut (an AI model "
                                    f"chooses that shadow); use one of {', '.join(SHADOWS)}", option="shadow.mode")
        shadow, softness = choice("shadow.mode", mode, SHADOWS)

    composite_color = rgba if rgba is not None and (rgba[3] < 255 or has_image) else None
    if has_image and composite_color is None and fmt == "jpg":
        composite_color = (255, 255, 255, 255)  # JPEG has no alpha: what a fitted background leaves is white
    composites = has_image or composite_color is not None
    options = parse({
        "format": "png" if composites else fmt,
        "canvas": _canvas(values),
        "scale": "100",
        "position": f"{horizontal}% {vertical}%",
        "fit": choice("scaling", values.get("scaling", "fit"), {"fit": "contain", "fill": "cover"}),
        "reference": choice("referenceBox", values.get("referenceBox", "subjectBox"),
                            {"subjectBox": "subject", "originalImage": "image"}),
        "snap_edges": snap_edges,
        "max_width": whole("maxWidth", values["maxWidth"], 1, MAX_CANVAS_SIDE) if "maxWidth" in values else None,
        "max_height": whole("maxHeight", values["maxHeight"], 1, MAX_CANVAS_SIDE) if "maxHeight" in values else None,
        "shadow": shadow,
        "shadow_softness": softness,
        "dpi": None if composites else dpi,
        "bg_color": "#%02x%02x%02x" % rgba[:3] if rgba is not None and not composites else None,
        "remove_background": not keep,
    })
    options = options.with_(padding=sides("padding", values), margin=sides("margin", values))
    return Edit(options, fmt, dpi, composite_color, values.get("background.imageUrl"), background_file,
                choice("background.scaling", values.get("background.scaling", "fill"),
                       {"fill": "cover", "fit": "contain"}))
