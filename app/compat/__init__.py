"""Drop-in compatibility routes for withoutbg, remove.bg, Photoroom, Clipdrop and Slazzer.

Each vendor module is a thin adapter: it reads the vendor's fields, maps them onto Clearcut's options
in ``fields.py`` (the one mapping table, documented in docs/compat.md), runs one ordinary job through
``common.run`` (the same validation, storage, job row, worker and cache as POST /v2; the job's
``source`` is the vendor name) and renders the result and errors the way that vendor does.
"""
from flask import Blueprint

from app.compat import clipdrop, photoroom, removebg, slazzer, withoutbg

bp = Blueprint("compat", __name__)
for _vendor in (withoutbg, removebg, photoroom, clipdrop, slazzer):
    bp.register_blueprint(_vendor.bp)
