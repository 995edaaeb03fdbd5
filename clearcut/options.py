"""The one validated options object shared by the API, the worker and the CLI.

``parse`` takes raw string-ish values (form fields, JSON values, CLI flags) and either returns a
frozen ``Options`` or raises ``InvalidOption`` with a stable code (``invalid_<option>``) and a
message that says which values are accepted. Nothing downstream re-parses.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from PIL import ImageColor

from clearcut.errors import InvalidOption

FORMATS = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp", "bmp": "bmp",
           "tiff": "tiff", "tif": "tiff", "gif": "gif"}
ALPHA_FORMATS = {"png", "webp", "tiff", "gif"}  # gif keeps 1-bit transparency only; see compose
CHANNELS = ("rgba", "alpha")
# Output caps in pixels (never upscaling). "full" is bounded by CLEARCUT_MAX_MEGAPIXELS on input.
SIZES = {"preview": 250_000, "medium": 1_500_000, "hd": 4_000_000, "full": None, "auto": None}
TRUE = {"true", "1", "yes"}
FALSE = {"false", "0", "no"}
MODEL_PRESETS = ("quality", "fast", "soft")
BOOLEANS = ("crop", "despill")


@dataclass(frozen=True)
class Margin:
    """crop_margin per side; ``relative`` values are fractions of the subject's size."""
    top: float = 0.0
    right: float = 0.0
    bottom: float = 0.0
    left: float = 0.0
    relative: bool = False


@dataclass(frozen=True)
class Options:
    format: str = "png"
    channels: str = "rgba"
    size: str = "full"
    crop: bool = False
    crop_margin: Margin = field(default_factory=Margin)
    bg_color: tuple[int, int, int] | None = None
    despill: bool = False
    model: str | None = None  # None: the configured default (a preset or a model name)
    review_below: float | None = None  # None: CLEARCUT_REVIEW_BELOW; never changes the cutout

    @property
    def flattened(self) -> bool:
        """True when the output has no alpha: an explicit background or a format without alpha."""
        return self.channels == "rgba" and (self.bg_color is not None or self.format not in ALPHA_FORMATS)

    def normalised(self) -> dict[str, Any]:
        """A canonical, JSON-friendly form (stable key for caching results)."""
        data = asdict(self)
        data["bg_color"] = "#%02x%02x%02x" % self.bg_color if self.bg_color else None
        return data

    def cutout_key(self) -> dict[str, Any]:
        """``normalised()`` without the fields that do not change the result's pixels (the result cache key)."""
        data = self.normalised()
        data.pop("review_below")
        return data

    def with_(self, **changes) -> "Options":
        return replace(self, **changes)


def _choice(name: str, value: str, allowed) -> str:
    key = str(value).strip().lower()
    if key not in allowed:
        raise InvalidOption(f"{name} must be one of {', '.join(allowed)} (got {value!r})",
                            code=f"invalid_{name}", option=name)
    return key


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    key = str(value).strip().lower()
    if key in TRUE:
        return True
    if key in FALSE:
        return False
    raise InvalidOption(f"{name} must be a boolean: true, false, 1, 0, yes or no (got {value!r})",
                        code="invalid_boolean", option=name)


_HEX = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


def parse_color(value: Any) -> tuple[int, int, int]:
    """CSS named colours, ``#rgb``, ``#rrggbb`` and the bare 3/6-digit hex forms; nothing else."""
    text = value.strip() if isinstance(value, str) else None
    if text:
        match = _HEX.fullmatch(text)
        if match:
            digits = match.group(1)
            if len(digits) == 3:
                digits = "".join(c * 2 for c in digits)
            return tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))
        named = ImageColor.colormap.get(text.lower())
        if isinstance(named, (str, tuple)):  # Pillow replaces a name it has looked up by its tuple
            return ImageColor.getrgb(text.lower())[:3]
    raise InvalidOption(
        f"bg_color must be a CSS colour name (e.g. white), #rgb or #rrggbb hex (e.g. #FFFFFF); got {value!r}",
        code="invalid_bg_color", option="bg_color")


_MARGIN_PART = re.compile(r"(\d+(?:\.\d+)?)(px|%)?")


def parse_margin(value: Any) -> Margin:
    """``30``, ``30px``, ``10%``, or 2/4 space/comma separated values (CSS order), all px or all %."""
    parts = [p for p in re.split(r"[\s,]+", str(value).strip()) if p]
    matches = [_MARGIN_PART.fullmatch(p) for p in parts]
    units = {(m.group(2) or "px") for m in matches if m}
    if len(parts) not in (1, 2, 4) or not all(matches) or len(units) != 1:
        raise InvalidOption(
            f"crop_margin must be 1, 2 or 4 values in px or % (e.g. 30px, 10%, '10px 20px'); got {value!r}",
            code="invalid_crop_margin", option="crop_margin")
    numbers = [float(m.group(1)) for m in matches]
    relative = units == {"%"}
    if relative:
        if any(n > 50 for n in numbers):
            raise InvalidOption("crop_margin percentages are limited to 50% per side",
                                code="invalid_crop_margin", option="crop_margin")
        numbers = [n / 100 for n in numbers]
    elif any(n > 500 for n in numbers):
        raise InvalidOption("crop_margin is limited to 500px per side", code="invalid_crop_margin",
                            option="crop_margin")
    if len(numbers) == 1:
        numbers *= 4
    elif len(numbers) == 2:
        numbers = numbers * 2
    return Margin(*numbers, relative=relative)


def parse_model(value: Any) -> str | None:
    from clearcut.models.registry import all_specs

    name = str(value).strip().lower()
    if not name:
        return None
    known = [*MODEL_PRESETS, *all_specs()]
    if name not in known:
        raise InvalidOption(f"model must be one of {', '.join(known)} (got {value!r})",
                            code="invalid_model", option="model")
    return name


def parse_review_below(value: Any) -> float:
    """A confidence threshold from 0 to 1 (``needs_review`` when a cutout's confidence is below it)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0 <= number <= 1:
        raise InvalidOption(f"review_below must be a number from 0 to 1 such as 0.9 (got {value!r})",
                            code="invalid_review_below", option="review_below")
    return number


PARSERS = {
    "format": lambda v: FORMATS[_choice("format", v, FORMATS)],
    "channels": lambda v: _choice("channels", v, CHANNELS),
    "size": lambda v: _choice("size", v, SIZES),
    "crop": lambda v: parse_bool("crop", v),
    "crop_margin": parse_margin,
    "bg_color": lambda v: None if v is None or (isinstance(v, str) and not v.strip()) else parse_color(v),
    "despill": lambda v: parse_bool("despill", v),
    "model": parse_model,
    "review_below": parse_review_below,
}


def parse(values: Mapping[str, Any], *, allow_unknown: bool = False) -> Options:
    """Build Options from raw values; option names are case-insensitive, empty values mean default."""
    parsed: dict[str, Any] = {}
    for raw_name, value in values.items():
        name = str(raw_name).strip().lower()
        if name not in PARSERS:
            if allow_unknown:
                continue
            raise InvalidOption(f"unknown option {raw_name!r}; accepted options: {', '.join(PARSERS)}",
                                code="unknown_option", option=str(raw_name))
        if name in parsed:
            raise InvalidOption(f"option {name!r} was given more than once", code="duplicate_option",
                                option=name)
        if value is None or (isinstance(value, str) and value.strip() == "" and name != "bg_color"):
            continue
        if isinstance(value, (list, dict)):
            raise InvalidOption(f"{name} must be a single value, not a {type(value).__name__}",
                                code="invalid_boolean" if name in BOOLEANS else f"invalid_{name}", option=name)
        parsed[name] = PARSERS[name](value)
    return Options(**parsed)
