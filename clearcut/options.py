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
SHADOWS = ("none", "drop", "contact", "floating")
FITS = ("contain", "cover")
SNAP_EDGES = ("none", "all", "horizontal", "vertical")
REFERENCES = ("subject", "image")
MAX_CANVAS_SIDE = 10_000
MAX_CANVAS_PIXELS = 50_000_000
MAX_ROI_PX = 100_000  # beyond any image CLEARCUT_MAX_MEGAPIXELS lets in; larger corners are clipped to the image


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
    # Layout (clearcut/pipeline/layout.py, docs/layout.md). canvas: "original", "square" or "WxH".
    canvas: str = "original"
    padding: Margin = field(default_factory=Margin)  # relative values are fractions of the canvas
    position: str | None = None  # None: "center" when the layout moves the subject, else "original"
    scale: float | None = None  # the subject's box: this % of the padded canvas (longer side fitting)
    shadow: str = "none"
    shadow_opacity: float | None = None  # 0-100; None: the shadow type's default
    shadow_softness: float | None = None  # 0-100; None: 50
    dpi: int | None = None  # written into PNG/JPEG/WebP/TIFF metadata
    layout: str | None = None  # a marketplace preset (clearcut.layouts.PRESETS), expanded by parse
    # Placement (docs/layout.md, "Margin, fit, snapping, reference"); Photoroom's /v2/edit maps onto these.
    margin: Margin = field(default_factory=Margin)  # clear band at the canvas edges; padding % are of what is inside
    fit: str = "contain"  # cover: the box covers the padded area (what overflows is clipped)
    snap_edges: str = "none"  # sides where the photo's frame cut the subject: no padding, subject held against them
    reference: str = "subject"  # image: the whole frame is fitted, the subject keeps its place in it
    max_width: int | None = None  # the canvas shrinks (aspect kept) to fit within these
    max_height: int | None = None
    remove_background: bool = True  # false: no segmentation; the whole frame is the subject
    # Matte (clearcut/pipeline/region.py, docs/api.md). roi: canonical "x1 y1 x2 y2" (px or %), None: the whole image.
    roi: str | None = None
    semitransparency: bool = True  # False: a hard matte, alpha only 0 or 1 (threshold 0.5)

    @property
    def laid_out(self) -> bool:
        """True when the layout step changes anything (a canvas, padding, position, scale or shadow)."""
        return (self.canvas != "original" or self.padding != Margin() or self.position is not None
                or self.scale is not None or self.shadow != "none" or self.margin != Margin() or self.fit != "contain"
                or self.max_width is not None or self.max_height is not None)

    @property
    def flattened(self) -> bool:
        """True when the output has no alpha: an explicit background or a format without alpha."""
        return self.channels == "rgba" and (self.bg_color is not None or self.format not in ALPHA_FORMATS)

    def normalised(self) -> dict[str, Any]:
        """A canonical, JSON-friendly form (stable key for caching results)."""
        data = asdict(self)
        data["bg_color"] = "#%02x%02x%02x" % self.bg_color if self.bg_color else None
        data["padding"] = format_margin(self.padding)
        data["margin"] = format_margin(self.margin)
        return data

    def cutout_key(self) -> dict[str, Any]:
        """``normalised()`` without the fields that do not change the result's pixels (the result cache key)."""
        data = self.normalised()
        data.pop("review_below")
        data.pop("layout")  # its values are in the fields it set
        defaults = Options().normalised()
        for name in (*LAYOUT_FIELDS, *PLACEMENT_FIELDS, *MATTE_FIELDS):  # absent at their defaults: older keys stay
            if data.get(name) == defaults[name]:
                data.pop(name, None)
        if self.crop and self.shadow != "none":  # the crop holds the shadow now; earlier results clipped it
            data["crop_holds_shadow"] = True
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


def parse_margin(value: Any, name: str = "crop_margin", max_px: int = 500, max_percent: int = 50) -> Margin:
    """``30``, ``30px``, ``10%``, or 2/4 space/comma separated values (CSS order), all px or all %."""
    parts = [p for p in re.split(r"[\s,]+", str(value).strip()) if p]
    matches = [_MARGIN_PART.fullmatch(p) for p in parts]
    units = {(m.group(2) or "px") for m in matches if m}
    if len(parts) not in (1, 2, 4) or not all(matches) or len(units) != 1:
        raise InvalidOption(
            f"{name} must be 1, 2 or 4 values in px or % (e.g. 30px, 10%, '10px 20px'); got {value!r}",
            code=f"invalid_{name}", option=name)
    numbers = [float(m.group(1)) for m in matches]
    relative = units == {"%"}
    if relative:
        if any(n > max_percent for n in numbers):
            raise InvalidOption(f"{name} percentages are limited to {max_percent}% per side",
                                code=f"invalid_{name}", option=name)
        numbers = [n / 100 for n in numbers]
    elif any(n > max_px for n in numbers):
        raise InvalidOption(f"{name} is limited to {max_px}px per side", code=f"invalid_{name}",
                            option=name)
    if len(numbers) == 1:
        numbers *= 4
    elif len(numbers) == 2:
        numbers = numbers * 2
    return Margin(*numbers, relative=relative)


def format_margin(margin: Margin) -> str:
    """The canonical text of a Margin (what ``parse_margin`` reads back)."""
    unit = "%" if margin.relative else "px"
    factor = 100 if margin.relative else 1
    return " ".join(f"{round(v * factor, 4):g}{unit}" for v in (margin.top, margin.right, margin.bottom,
                                                                 margin.left))


def parse_padding(value: Any) -> Margin:
    """padding: like crop_margin, but % are of the canvas inside ``margin`` (at most 49 % per side) and px at
    most 5000."""
    return parse_margin(value, name="padding", max_px=5000, max_percent=49)


def parse_canvas_margin(value: Any) -> Margin:
    """margin: like padding, but % are of the whole canvas."""
    return parse_margin(value, name="margin", max_px=5000, max_percent=49)


def parse_max_side(name: str, value: Any) -> int:
    text = str(value).strip() if not isinstance(value, bool) else ""
    if not text.isdigit() or not 1 <= int(text) <= MAX_CANVAS_SIDE:
        raise InvalidOption(f"{name} must be a whole number of pixels from 1 to {MAX_CANVAS_SIDE} (e.g. 1200); "
                            f"got {value!r}", code=f"invalid_{name}", option=name)
    return int(text)


_CANVAS = re.compile(r"(\d{1,5})\s*[x×]\s*(\d{1,5})")


def parse_canvas(value: Any) -> str:
    """``original`` (the cutout's own size), ``square`` (its longer side squared), ``subject`` (the subject's
    box at its own size plus margin and padding) or ``WxH`` pixels."""
    text = str(value).strip().lower()
    if text in ("original", "square", "subject"):
        return text
    match = _CANVAS.fullmatch(text)
    if match:
        width, height = int(match.group(1)), int(match.group(2))
        if 1 <= width <= MAX_CANVAS_SIDE and 1 <= height <= MAX_CANVAS_SIDE and width * height <= MAX_CANVAS_PIXELS:
            return f"{width}x{height}"
    raise InvalidOption(f"canvas must be original, square, subject or WxH pixels (e.g. 2000x2000; each side 1-"
                        f"{MAX_CANVAS_SIDE}, at most {MAX_CANVAS_PIXELS // 1_000_000} MP); got {value!r}",
                        code="invalid_canvas", option="canvas")


_POSITION = re.compile(r"(\d+(?:\.\d+)?)%(?:[\s,]+(\d+(?:\.\d+)?)%)?")


def parse_position(value: Any) -> str:
    """``center``, ``original`` (where it was, relative to the frame) or ``X% Y%`` (0 % left/top edge,
    100 % right/bottom edge; one value sets both)."""
    text = str(value).strip().lower()
    if text in ("center", "centre"):
        return "center"
    if text == "original":
        return "original"
    match = _POSITION.fullmatch(text)
    if match:
        x = float(match.group(1))
        y = float(match.group(2)) if match.group(2) is not None else x
        if x <= 100 and y <= 100:
            return f"{x:g}% {y:g}%"
    raise InvalidOption(f"position must be center, original or 'X% Y%' with each from 0% to 100% (e.g. '50% 100%'); "
                        f"got {value!r}", code="invalid_position", option="position")


def _percent(name: str, value: Any, low: float, high: float, example: str) -> float:
    text = str(value).strip().rstrip("%").strip() if not isinstance(value, bool) else ""
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not low <= number <= high:
        raise InvalidOption(f"{name} must be a number from {low:g} to {high:g} (e.g. {example}); got {value!r}",
                            code=f"invalid_{name}", option=name)
    return number


_ROI_PART = re.compile(r"(\d+(?:\.\d+)?)(px|%)?")


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{round(value, 4):f}".rstrip("0")


def parse_roi(value: Any) -> str | None:
    """remove.bg's region of interest, ``x1 y1 x2 y2``: the top-left and bottom-right corners, each in px
    (a bare number is px) or % of the image's width/height. Canonical text back; the whole image is None.
    Mixed units can only be checked against an image (``clearcut.pipeline.region.resolve``)."""
    text = "" if isinstance(value, bool) else str(value).strip().lower()
    parts = [p for p in re.split(r"[\s,]+", text) if p]
    matches = [_ROI_PART.fullmatch(p) for p in parts]
    if len(parts) != 4 or not all(matches):
        raise InvalidOption(f"roi must be four coordinates 'x1 y1 x2 y2' (top-left and bottom-right corners), each in "
                            f"px or % (e.g. '10% 10% 90% 90%' or '10px 20px 300px 400px'); got {value!r}",
                            code="invalid_roi", option="roi")
    coords = [_corner(m) for m in matches]
    if any(number > (100 if unit == "%" else MAX_ROI_PX) for number, unit in coords):
        raise InvalidOption(f"roi coordinates go from 0% to 100% of the image, or 0 to {MAX_ROI_PX}px; got {value!r}",
                            code="invalid_roi", option="roi")
    for low, high, axis in ((0, 2, "x"), (1, 3, "y")):
        (a, unit_a), (b, unit_b) = coords[low], coords[high]
        if unit_a == unit_b and a >= b:
            raise InvalidOption(f"roi is empty: {axis}2 must be greater than {axis}1 (got {value!r}); the corners are "
                                "top-left then bottom-right", code="invalid_roi", option="roi")
    if coords == [(0, "%"), (0, "%"), (100, "%"), (100, "%")]:
        return None  # remove.bg's default: the whole image
    return " ".join(f"{_number(number)}{unit}" for number, unit in coords)


def _corner(match: re.Match) -> tuple[float, str]:
    return float(match.group(1)), match.group(2) or "px"


def roi_corners(roi: str) -> list[tuple[float, str]]:
    """The four (number, "px" or "%") coordinates of a ``roi`` as ``parse_roi`` returns it."""
    return [_corner(_ROI_PART.fullmatch(part)) for part in roi.split()]


def parse_semitransparency(value: Any) -> bool:
    try:
        return parse_bool("semitransparency", value)
    except InvalidOption:
        raise InvalidOption(f"semitransparency must be a boolean: true (soft edges, the default) or false (a hard "
                            f"matte, alpha only 0 or 255); also 1, 0, yes, no (got {value!r})",
                            code="invalid_semitransparency", option="semitransparency") from None


def parse_dpi(value: Any) -> int:
    text = str(value).strip() if not isinstance(value, bool) else ""
    if not text.isdigit() or not 1 <= int(text) <= 2400:
        raise InvalidOption(f"dpi must be a whole number from 1 to 2400 (e.g. 300); got {value!r}",
                            code="invalid_dpi", option="dpi")
    return int(text)


def parse_layout(value: Any) -> str:
    from clearcut.layouts import PRESETS

    return _choice("layout", value, PRESETS)


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
    "canvas": parse_canvas,
    "padding": parse_padding,
    "position": parse_position,
    "scale": lambda v: _percent("scale", v, 1, 100, "85 or 85%"),
    "shadow": lambda v: _choice("shadow", v, SHADOWS),
    "shadow_opacity": lambda v: _percent("shadow_opacity", v, 0, 100, "40"),
    "shadow_softness": lambda v: _percent("shadow_softness", v, 0, 100, "50"),
    "dpi": parse_dpi,
    "layout": parse_layout,
    "margin": parse_canvas_margin,
    "fit": lambda v: _choice("fit", v, FITS),
    "snap_edges": lambda v: _choice("snap_edges", v, SNAP_EDGES),
    "reference": lambda v: _choice("reference", v, REFERENCES),
    "max_width": lambda v: parse_max_side("max_width", v),
    "max_height": lambda v: parse_max_side("max_height", v),
    "remove_background": lambda v: parse_bool("remove_background", v),
    "roi": parse_roi,
    "semitransparency": parse_semitransparency,
}
LAYOUT_FIELDS = ("canvas", "padding", "position", "scale", "shadow", "shadow_opacity", "shadow_softness", "dpi",
                 "layout")
# Later options: left out of the result key at their defaults (like the layout fields), stored in job rows.
PLACEMENT_FIELDS = ("margin", "fit", "snap_edges", "reference", "max_width", "max_height", "remove_background")
MATTE_FIELDS = ("roi", "semitransparency")


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
    if parsed.get("layout"):  # a preset fills in what the request did not say; explicit options win
        from clearcut.layouts import PRESETS

        for name, value in PRESETS[parsed["layout"]].options.items():
            parsed.setdefault(name, value)
    return Options(**parsed)
