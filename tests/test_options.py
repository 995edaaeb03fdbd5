import pytest

from clearcut.errors import InvalidOption
from clearcut.options import Margin, Options, parse, parse_color


def test_defaults_follow_the_contract():
    o = parse({})
    assert (o.format, o.channels, o.size, o.crop, o.bg_color, o.despill) == ("png", "rgba", "full", False, None,
                                                                            False)
    assert not o.flattened


@pytest.mark.parametrize("raw,expected", [("png", "png"), ("JPG", "jpg"), ("jpeg", "jpg"), ("webp", "webp"),
                                          ("bmp", "bmp"), ("tif", "tiff"), ("TIFF", "tiff"), ("gif", "gif")])
def test_format_aliases(raw, expected):
    assert parse({"format": raw}).format == expected


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", True])
def test_true_values(value):
    assert parse({"crop": value}).crop is True


@pytest.mark.parametrize("value", ["false", "0", "no", "No", False])
def test_false_values(value):
    assert parse({"despill": value}).despill is False


@pytest.mark.parametrize("field,value,code", [
    ("format", "svg", "invalid_format"), ("channels", "rgb", "invalid_channels"), ("size", "4k", "invalid_size"),
    ("crop", "maybe", "invalid_boolean"), ("despill", "2", "invalid_boolean"), ("model", "nope", "invalid_model"),
    ("crop_margin", "10em", "invalid_crop_margin"), ("crop_margin", "60%", "invalid_crop_margin"),
    ("crop_margin", "10px 5%", "invalid_crop_margin"), ("colour", "red", "unknown_option"),
    ("crop", ["true"], "invalid_boolean"), ("bg_color", [255, 255, 255], "invalid_bg_color"),
])
def test_invalid_values_have_specific_codes(field, value, code):
    with pytest.raises(InvalidOption) as err:
        parse({field: value})
    assert err.value.code == code and err.value.status == 400
    assert err.value.message  # says what is accepted
    if code not in ("unknown_option",):
        assert field in err.value.message or "boolean" in err.value.message


@pytest.mark.parametrize("value", ["#FFFF", "##FFFFFF", "FFFFF", "bluish", "255,255,255", "[255,255,255]",
                                   "rgb(1,2,3)", "#GGGGGG", ""])
def test_spec_failing_colours_are_refused(value):
    with pytest.raises(InvalidOption) as err:
        parse_color(value)
    assert err.value.code == "invalid_bg_color"


@pytest.mark.parametrize("value,rgb", [("white", (255, 255, 255)), ("Navy", (0, 0, 128)), ("#FFF", (255, 255, 255)),
                                       ("fff", (255, 255, 255)), ("#00ff7F", (0, 255, 127)),
                                       ("00FF7F", (0, 255, 127)), ("rebeccapurple", (102, 51, 153))])
def test_colours(value, rgb):
    assert parse({"bg_color": value}).bg_color == rgb


def test_option_names_are_case_insensitive_and_flattening_follows_format():
    o = parse({"FORMAT": "jpg", "Channels": "RGBA"})
    assert o.format == "jpg" and o.flattened
    assert parse({"bg_color": "red"}).flattened


@pytest.mark.parametrize("raw,margin", [("30", Margin(30, 30, 30, 30)), ("30px", Margin(30, 30, 30, 30)),
                                        ("10%", Margin(.1, .1, .1, .1, True)),
                                        ("10px 20px", Margin(10, 20, 10, 20)),
                                        ("1 2 3 4", Margin(1, 2, 3, 4))])
def test_crop_margin(raw, margin):
    assert parse({"crop_margin": raw}).crop_margin == margin


def test_normalised_form_is_stable_for_cache_keys():
    a = parse({"format": "JPEG", "bg_color": "white"}).normalised()
    b = parse({"format": "jpg", "bg_color": "#ffffff"}).normalised()
    assert a == b and a["bg_color"] == "#ffffff"
    assert Options().with_(crop=True).crop
