"""The one place that maps each vendor's request fields and values onto Clearcut's ``Options``.

Every vendor route hands its (lower-cased) non-image fields to ``map_fields(vendor, fields)``. A field
is either translated to Clearcut option values (validated by ``clearcut.options.parse``, so the same
``invalid_<option>`` codes as ``/v2``), turned into an ``Extras`` instruction the adapter implements on
top of the pipeline result (remove.bg's zip output, semi-transparent or image backgrounds), accepted
when its value is the vendor's no-op default, or refused with a specific error. Nothing is ignored:
an unknown field is ``unknown_option``, and a field that belongs to another vendor's API is
``mixed_vendor_fields`` with the name to use instead. docs/compat.md is the table of this module.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from clearcut.errors import InvalidOption
from clearcut.options import Options, parse, parse_bool, parse_position

VENDOR_NAMES = {"withoutbg": "withoutbg", "removebg": "remove.bg", "photoroom": "Photoroom",
                "clipdrop": "Clipdrop", "slazzer": "Slazzer", "v2": "Clearcut /v2"}


class UnsupportedOption(InvalidOption):
    """A vendor option Clearcut does not implement (a value other than the vendor's no-op default)."""
    code = "unsupported_option"


@dataclass
class Extras:
    """What the adapter does after the pipeline (remove.bg features Clearcut's options do not carry)."""
    auto_format: bool = False                          # remove.bg format=auto: jpg when opaque, else png
    zip: bool = False                                  # remove.bg format=zip: color.jpg + alpha.png
    bg_rgba: tuple[int, int, int, int] | None = None   # 4/8-digit hex background with alpha < 255
    bg_image_url: str | None = None
    bg_image_file: bool = False                        # the multipart file field bg_image_file
    type_hint: str = "auto"                            # remove.bg type, echoed as X-Type
    credits: float = 1.0                               # remove.bg X-Credits-Charged


@dataclass
class Mapped:
    options: Options
    extras: Extras = field(default_factory=Extras)


# -- value translators: raw vendor value -> (Clearcut option values, extras changes) --------------------
Translation = tuple[dict, dict]
Translator = Callable[[Any], Translation]


def _same(option: str) -> Translator:
    return lambda value: ({option: value}, {})


def _choice(vendor_field: str, value: Any, allowed: dict[str, Any]) -> Any:
    key = str(value).strip().lower()
    if key not in allowed:
        raise InvalidOption(f"{vendor_field} must be one of {', '.join(allowed)} (got {value!r})",
                            code=f"invalid_{vendor_field}", option=vendor_field)
    return allowed[key]


REMOVEBG_SIZES = {"preview": "preview", "small": "preview", "regular": "preview", "medium": "medium",
                  "hd": "hd", "full": "full", "4k": "full", "50mp": "full", "auto": "auto"}
REMOVEBG_FORMATS = ("auto", "png", "jpg", "jpeg", "webp", "zip")
REMOVEBG_TYPES = ("auto", "person", "product", "animal", "car", "car_interior", "car_part", "transportation",
                  "graphic", "other")
_HEX_ALPHA = re.compile(r"#?([0-9a-fA-F]{4}|[0-9a-fA-F]{8})")


def _removebg_size(value: Any) -> Translation:
    size = _choice("size", value, REMOVEBG_SIZES)
    return {"size": size}, {"credits": 0.25 if size == "preview" else 1.0}


def _removebg_format(value: Any) -> Translation:
    fmt = _choice("format", value, {f: f for f in REMOVEBG_FORMATS})
    if fmt == "auto":
        return {}, {"auto_format": True}
    if fmt == "zip":
        return {}, {"zip": True}
    return {"format": fmt}, {}


def _removebg_bg_color(value: Any) -> Translation:
    """remove.bg also takes #rgba / #rrggbbaa; an alpha below ff is composited by the adapter."""
    match = _HEX_ALPHA.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        return {"bg_color": value}, {}
    digits = match.group(1)
    if len(digits) == 4:
        digits = "".join(c * 2 for c in digits)
    rgba = tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4, 6))
    if rgba[3] == 255:
        return {"bg_color": "#" + digits[:6]}, {}
    return {}, {"bg_rgba": rgba}


def _removebg_type(value: Any) -> Translation:
    return {}, {"type_hint": _choice("type", value, {t: t for t in REMOVEBG_TYPES})}


# remove.bg's shadow types, onto Clearcut's rendered shadows: a car's or a 3D object's shadow lies on the
# ground under it (contact); drop is the silhouette offset behind the subject. remove.bg's default is car.
REMOVEBG_SHADOWS = {"car": "contact", "3d": "contact", "drop": "drop"}


def _removebg_scale(value: Any) -> Translation:
    """``original`` or 10%-100%: the subject's box as a share of the canvas (Clearcut's scale)."""
    text = str(value).strip().lower()
    if text == "original":
        return {}, {}
    try:
        number = float(text.removesuffix("%")) if not isinstance(value, bool) else float("nan")
    except ValueError:
        number = float("nan")
    if not 10 <= number <= 100:
        raise InvalidOption(f"scale must be original or a percentage from 10% to 100% of the image (e.g. 80%); "
                            f"got {value!r}", code="invalid_scale", option="scale")
    return {"scale": number}, {}


def _removebg_position(value: Any) -> Translation:
    """Validated as Clearcut's position (original, center, X% or 'X% Y%'); ``_removebg_rules`` decides
    whether it applies."""
    return {"position": parse_position(value)}, {}


def _removebg_add_shadow(value: Any) -> Translation:
    parse_bool("add_shadow", value)  # validated here; _removebg_rules turns true into a shadow
    return {}, {}


def _removebg_shadow_type(value: Any) -> Translation:
    return {"shadow": _choice("shadow_type", value, REMOVEBG_SHADOWS)}, {}


def _removebg_rules(given: dict[str, Any], values: dict[str, Any]) -> None:
    """remove.bg's rules between fields, on the translated values: the shadow fields need add_shadow=true
    (the shadow type defaults to car), and position only acts with scale or crop=true (with scale alone
    it defaults to center, Clearcut's default whenever scale is set)."""
    shadow = "add_shadow" in given and parse_bool("add_shadow", given["add_shadow"])
    for name in ("shadow_type", "shadow_opacity"):
        if name in given and not shadow:
            raise InvalidOption(f"{name} only applies to a shadow: send add_shadow=true with it, or leave {name} out",
                                code=f"invalid_{name}", option=name)
    if shadow:
        values.setdefault("shadow", REMOVEBG_SHADOWS["car"])
    crop = "crop" in given and parse_bool("crop", given["crop"])
    position = values.get("position")
    if position is not None and "scale" not in values and (not crop or position == "original"):
        del values["position"]  # the subject stays where it is, as on remove.bg


def _bg_image_url(value: Any) -> Translation:
    if not isinstance(value, str) or not value.strip():
        raise InvalidOption("bg_image_url must be an http(s) URL of an image", code="invalid_bg_image_url",
                            option="bg_image_url")
    return {}, {"bg_image_url": value.strip()}


def _renamed(option: str, vendor_field: str) -> Translator:
    """A vendor field that is a Clearcut option under another name: errors name the vendor's field."""
    def translate(value: Any) -> Translation:
        try:
            parse({option: value})
        except InvalidOption as exc:
            raise InvalidOption(exc.message.replace(option, vendor_field, 1), code=exc.code,
                                option=vendor_field) from None
        return {option: value}, {}
    return translate


@dataclass(frozen=True)
class Field:
    translate: Translator
    option: str   # the Clearcut option (or adapter feature) it maps to, for the docs table
    note: str = ""


_V2_NOTE = "same values and errors as /v2"
FIELDS: dict[str, dict[str, Field]] = {
    "v2": {name: Field(_same(name), name, _V2_NOTE)
           for name in ("format", "channels", "size", "crop", "crop_margin", "bg_color", "despill", "model")},
    "withoutbg": {},
    "removebg": {
        "size": Field(_removebg_size, "size", "preview/small/regular -> preview (0.25 MP), medium, hd, "
                                              "full/4k/50MP -> full, auto"),
        "format": Field(_removebg_format, "format", "auto (jpg when flattened, else png), png, jpg, webp, zip"),
        "channels": Field(_same("channels"), "channels", "rgba or alpha"),
        "bg_color": Field(_removebg_bg_color, "bg_color", "hex/CSS colour; #rgba/#rrggbbaa composited by the "
                                                          "adapter"),
        "bg_image_url": Field(_bg_image_url, "adapter: background image", "fetched with the SSRF guard"),
        "crop": Field(_same("crop"), "crop", ""),
        "crop_margin": Field(_same("crop_margin"), "crop_margin", "px or %, 1/2/4 values"),
        "scale": Field(_removebg_scale, "scale", "original, or 10%-100% of the canvas; implies position=center"),
        "position": Field(_removebg_position, "position", "original, center, X% or 'X% Y%'; acts with scale or crop"),
        "roi": Field(_same("roi"), "roi", "x1 y1 x2 y2 in px or %"),
        "type": Field(_removebg_type, "adapter: X-Type", "accepted and echoed; no class-specific model"),
        "add_shadow": Field(_removebg_add_shadow, "shadow",
                            "true: the shadow_type's shadow (car by default)"),
        "shadow_type": Field(_removebg_shadow_type, "shadow", "car, 3D -> contact; drop -> drop; needs add_shadow"),
        "shadow_opacity": Field(_same("shadow_opacity"), "shadow_opacity", "0-100; needs add_shadow"),
        "semitransparency": Field(_same("semitransparency"), "semitransparency", "false: a hard matte"),
    },
    "photoroom": {name: Field(_same(name), name, _V2_NOTE)
                  for name in ("format", "channels", "bg_color", "size", "crop", "despill")},
    "clipdrop": {},
    "slazzer": {
        "bg_color_code": Field(_renamed("bg_color", "bg_color_code"), "bg_color", "hex code or CSS name"),
        "channel": Field(_renamed("channels", "channel"), "channels", "rgba or alpha"),
        "format": Field(_same("format"), "format", "png, jpg (and the other /v2 formats)"),
        "crop": Field(_same("crop"), "crop", ""),
    },
}

# Rules between a vendor's fields, applied to the translated option values before they are parsed.
RULES: dict[str, Callable[[dict, dict], None]] = {"removebg": _removebg_rules}

# Image inputs per vendor (handled by the route, listed here so mixed requests are recognised).
INPUTS: dict[str, tuple[str, ...]] = {
    "v2": ("image_file", "image_url", "image_base64", "image_file_b64", "image"),
    "withoutbg": ("image_base64", "file"),
    "removebg": ("image_file", "image_file_b64", "image_url", "bg_image_file"),
    "photoroom": ("image_file",),
    "clipdrop": ("image_file",),
    "slazzer": ("source_image_file", "source_image_url", "source_image_base64"),
}
# Same meaning, different vendor spelling (for "use X instead" messages).
_EQUIVALENT_INPUTS = [
    {"v2": "image_file", "removebg": "image_file", "photoroom": "image_file", "clipdrop": "image_file",
     "slazzer": "source_image_file", "withoutbg": "file"},
    {"v2": "image_url", "removebg": "image_url", "slazzer": "source_image_url"},
    {"v2": "image_base64", "removebg": "image_file_b64", "slazzer": "source_image_base64",
     "withoutbg": "image_base64"},
]


_NO_EQUIVALENT = {("clipdrop", "format"): "Clipdrop chooses the output type with the Accept header "
                                          "(image/png, image/jpeg or image/webp)"}


def _equivalent(vendor: str, other: str, name: str) -> str | None:
    for group in _EQUIVALENT_INPUTS:
        if group.get(other) == name and vendor in group:
            return group[vendor]
    spec = FIELDS.get(other, {}).get(name)
    if spec is not None:
        for own_name, own in FIELDS[vendor].items():
            if own.option == spec.option:
                return own_name
    return None


def foreign_field_error(vendor: str, name: str) -> InvalidOption:
    """The error for a field this vendor does not have: mixed vendors, or simply unknown."""
    order = [*(v for v in FIELDS if v != "v2"), "v2"]  # name a vendor before /v2 when both have the field
    owners = [v for v in order if v != vendor and (name in FIELDS[v] or name in INPUTS[v])]
    accepted = [*INPUTS[vendor], *FIELDS[vendor]]
    if owners:
        use = _equivalent(vendor, owners[0], name)
        hint = f"send {use!r} instead" if use else _NO_EQUIVALENT.get((vendor, name), "this endpoint has no equivalent")
        return InvalidOption(
            f"{name!r} is a {VENDOR_NAMES[owners[0]]} field, not a {VENDOR_NAMES[vendor]} one: {hint} "
            f"(accepted fields: {', '.join(accepted) or 'none'})",
            code="mixed_vendor_fields", field=name, vendor=owners[0], use=use)
    return InvalidOption(f"unknown field {name!r} for the {VENDOR_NAMES[vendor]} endpoint; accepted fields: "
                         f"{', '.join(accepted) or 'none'}", code="unknown_option", field=name)


def map_fields(vendor: str, fields: dict[str, Any], base: Options | None = None) -> Mapped:
    """Translate a vendor's option fields (names lower-cased, image inputs already removed)."""
    table = FIELDS[vendor]
    values: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    given: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in table:
            raise foreign_field_error(vendor, name)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # an empty field means the default, as on /v2
        if isinstance(value, (list, dict)):
            raise InvalidOption(f"{name} must be a single value, not a {type(value).__name__}",
                                code=f"invalid_{name}", option=name)
        option_values, extra = table[name].translate(value)
        values.update(option_values)
        extras.update(extra)
        given[name] = value
    if vendor in RULES:
        RULES[vendor](given, values)
    options = parse(values)
    if base is not None:
        options = base.with_(**{k: getattr(options, k) for k in values})
    return Mapped(options, Extras(**extras))


def table_rows() -> list[tuple[str, str, str, str]]:
    """(vendor, vendor field, Clearcut option, note) for every mapped field and input (docs/compat.md)."""
    rows = []
    for vendor in FIELDS:
        if vendor == "v2":
            continue
        rows += [(vendor, name, "image input", "") for name in INPUTS[vendor]]
        rows += [(vendor, name, spec.option, spec.note) for name, spec in FIELDS[vendor].items()]
    return rows
