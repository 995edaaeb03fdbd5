"""Drop-in compatibility routes for withoutbg, remove.bg, Photoroom (/v1/segment and /v2/edit), Clipdrop and
Slazzer.

Each vendor module is a thin adapter: it reads the vendor's fields, maps them onto Clearcut's options
in ``fields.py`` (the one mapping table, documented in docs/compat.md), runs one ordinary job through
``common.run`` (the same validation, storage, job row, worker and cache as POST /v2; the job's
``source`` is the vendor name) and renders the result and errors the way that vendor does.
"""
from flask import Blueprint

from app.compat import clipdrop, photoroom, photoroom_edit, removebg, slazzer, withoutbg

bp = Blueprint("compat", __name__)
for _vendor in (withoutbg, removebg, photoroom, photoroom_edit, clipdrop, slazzer):
    bp.register_blueprint(_vendor.bp)
