"""Marketplace layout presets: the ``layout`` option's values.

Each preset is a set of already-parsed option values that ``clearcut.options.parse`` fills in for the
fields a request leaves out (explicit options win), with the public rule it follows and where that
rule is published (docs/layout.md shows them as a table).
"""
from __future__ import annotations

from dataclasses import dataclass, field

WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Preset:
    name: str
    options: dict = field(default_factory=dict)
    rule: str = ""
    source: str = ""


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("amazon", {"canvas": "2000x2000", "scale": 90.0, "position": "center", "bg_color": WHITE, "shadow": "none"},
           "main image: pure white background (RGB 255, 255, 255), the product filling at least 85 % of the "
           "frame, at least 1000 px on the longer side (2000 px recommended for zoom), no shadow or props",
           "Amazon Seller Central product image requirements"),
    Preset("shopify", {"canvas": "2048x2048", "scale": 85.0, "position": "center", "bg_color": WHITE,
                       "shadow": "contact"},
           "square 2048 x 2048 px displays best in themes (uploads up to 5000 x 5000 px, 20 MB); no background rule",
           "Shopify Help Center, product media"),
    Preset("ebay", {"canvas": "1600x1600", "scale": 90.0, "position": "center", "bg_color": WHITE, "shadow": "none"},
           "at least 500 px on the longest side, 1600 px recommended; no added borders, text or watermarks",
           "eBay picture policy (ebay.com/help/policies/listing-policies/picture-policy)"),
    Preset("etsy", {"canvas": "2000x2000", "scale": 80.0, "position": "center", "bg_color": WHITE,
                    "shadow": "contact"},
           "2000 px on the shortest side recommended; thumbnails are cropped to a square, so the product is "
           "centred with room around it",
           "Etsy Seller Handbook, listing photos"),
    Preset("google-merchant", {"canvas": "1500x1500", "scale": 85.0, "position": "center", "bg_color": WHITE,
                               "shadow": "none"},
           "at least 500 x 500 px (100 x 100 px before 2027), 1500 x 1500 px recommended; the product fills 75-90 % "
           "of the image; no borders, watermarks or promotional overlays",
           "Google Merchant Center Help, image link [image_link]"),
)}
