"""Property-based tests (hypothesis) for the parsers that see raw user input: options, colours, base64.

Whatever the input, each parser either returns a valid value or raises its own 4xx error — never
anything else (which the API would turn into a 500). Derandomized, so every run tries the same
examples; the example counts keep the file to a few seconds.
"""
import base64
import string

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from PIL import ImageColor

from app.inputs import BadRequest, _decodes_to_image, decode_base64
from clearcut.errors import ClearcutError, InvalidOption
from clearcut.options import FORMATS, PARSERS, SIZES, Margin, Options, parse, parse_color

QUICK = settings(max_examples=300, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                    st.binary(max_size=10))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=3))
option_names = st.one_of(st.sampled_from(sorted(PARSERS)), st.text(max_size=12))


# --- options ---------------------------------------------------------------------------------------

@QUICK
@given(st.dictionaries(option_names, values, max_size=6))
def test_options_parse_returns_options_or_a_400(raw):
    try:
        options = parse(raw)
    except InvalidOption as exc:
        assert exc.status == 400 and (exc.code.startswith("invalid_") or exc.code in ("unknown_option",
                                                                                       "duplicate_option"))
        assert exc.message
        return
    assert isinstance(options, Options)
    assert options.format in FORMATS.values() and options.size in SIZES
    assert options.channels in ("rgba", "alpha") and isinstance(options.crop, bool)
    assert isinstance(options.crop_margin, Margin)
    assert options.bg_color is None or (len(options.bg_color) == 3 and all(0 <= c <= 255 for c in options.bg_color))


valid = st.fixed_dictionaries({}, optional={
    "format": st.sampled_from(sorted(FORMATS)),
    "channels": st.sampled_from(["rgba", "alpha", "RGBA", " alpha "]),
    "size": st.sampled_from(sorted(SIZES)),
    "crop": st.sampled_from([True, False, "true", "False", "1", "0", "yes", "NO"]),
    "despill": st.booleans(),
    "bg_color": st.tuples(*[st.integers(0, 255)] * 3).map(lambda c: "#%02x%02x%02x" % c),
    "crop_margin": st.one_of(st.integers(0, 500).map(lambda n: f"{n}px"), st.integers(0, 50).map(lambda n: f"{n}%"),
                             st.tuples(st.integers(0, 500), st.integers(0, 500)).map(lambda t: f"{t[0]}px {t[1]}px")),
})


@QUICK
@given(valid, st.randoms(use_true_random=False))
def test_valid_options_parse_and_names_are_case_insensitive(raw, rnd):
    options = parse(raw)
    shuffled = {"".join(c.upper() if rnd.random() < 0.5 else c for c in name): value for name, value in raw.items()}
    assert parse(shuffled) == options
    if "format" in raw:
        assert options.format == FORMATS[raw["format"]]


@QUICK
@given(valid)
def test_normalised_options_are_a_fixed_point(raw):
    """normalised() is the cache key: parsing its own values again must give the same options."""
    options = parse(raw)
    again = {k: v for k, v in options.normalised().items() if k not in ("crop_margin", "model")}
    assert parse(again).with_(crop_margin=options.crop_margin) == options


# --- colours ---------------------------------------------------------------------------------------

@QUICK
@given(st.one_of(st.text(max_size=20), scalars))
@example("#FFFF")
@example("##FFFFFF")
@example("255,255,255")
@example("rgb(1,2,3)")
def test_parse_color_returns_rgb_or_invalid_bg_color(value):
    try:
        rgb = parse_color(value)
    except InvalidOption as exc:
        assert exc.code == "invalid_bg_color" and exc.status == 400 and "#FFFFFF" in exc.message
        return
    assert isinstance(rgb, tuple) and len(rgb) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in rgb)


@QUICK
@given(st.tuples(*[st.integers(0, 255)] * 3), st.booleans(), st.booleans())
def test_hex_colours_round_trip(rgb, hash_sign, upper):
    text = "%02x%02x%02x" % rgb
    text = (text.upper() if upper else text)
    assert parse_color(("#" if hash_sign else "") + text) == rgb
    short = tuple(c // 17 * 17 for c in rgb)
    three = "".join("%x" % (c // 17) for c in short)
    assert parse_color("#" + three) == short


@QUICK
@given(st.sampled_from(sorted(ImageColor.colormap)), st.sampled_from([str.lower, str.upper, str.title]))
def test_css_names_in_any_case(name, case):
    assert parse_color(case(name)) == ImageColor.getrgb(name)[:3]


# --- base64 ----------------------------------------------------------------------------------------

payloads = st.binary(min_size=1, max_size=300)


def _not_double(data: bytes) -> bool:
    return not _decodes_to_image(data.strip())


@QUICK
@given(payloads)
def test_base64_round_trip(data):
    assume(_not_double(data))
    assert decode_base64(base64.b64encode(data).decode(), "image_base64") == data
    assert decode_base64("data:image/png;base64," + base64.b64encode(data).decode(), "image_base64") == data


@QUICK
@given(payloads, st.data())
def test_base64_with_whitespace_is_refused(data, draw):
    text = base64.b64encode(data).decode()
    at = draw.draw(st.integers(0, len(text)))
    ws = draw.draw(st.sampled_from([" ", "\n", "\r\n", "\t"]))
    with pytest.raises(BadRequest) as info:
        decode_base64(text[:at] + ws + text[at:], "image_base64")
    assert info.value.code == "invalid_base64"


@QUICK
@given(payloads)
def test_base64_without_padding_is_refused(data):
    text = base64.b64encode(data).decode()
    assume(text.endswith("="))
    with pytest.raises(BadRequest) as info:
        decode_base64(text.rstrip("="), "image_base64")
    assert info.value.code == "invalid_base64"


@QUICK
@given(payloads)
def test_url_safe_alphabet_is_refused(data):
    standard, url_safe = base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode()
    assume(standard != url_safe)
    with pytest.raises(BadRequest) as info:
        decode_base64(url_safe, "image_base64")
    assert info.value.code == "invalid_base64"


@QUICK
@given(payloads, st.sampled_from(["text/plain", "application/pdf", "text/html", "application/json", "video/mp4"]))
def test_data_url_with_a_non_image_mime_is_refused(data, mime):
    with pytest.raises(BadRequest) as info:
        decode_base64(f"data:{mime};base64," + base64.b64encode(data).decode(), "image_base64")
    assert info.value.code == "invalid_base64"


@QUICK
@given(st.one_of(st.text(alphabet=string.printable + "éß\u2603\x00", max_size=200), scalars,
                 st.lists(st.integers(), max_size=3)))
def test_any_input_decodes_or_gives_invalid_base64(value):
    try:
        out = decode_base64(value, "image_base64")
    except ClearcutError as exc:
        assert exc.code == "invalid_base64" and exc.status == 400
        return
    assert isinstance(out, bytes) and out and base64.b64encode(out).decode() in value
