"""JSON endpoints the console needs that the rest of the API lacks, scoped to the caller's account:

* ``GET /v2/batches`` — the account's batches, newest first, with counts and progress (cursor pages);
* ``GET /v2/usage`` — images charged per day and per option value over the last ``days`` days;
* ``GET /v2/layouts`` — the marketplace presets of the ``layout`` option, with the options each one
  sets, the rule it follows and where that rule is published.
"""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import and_, or_, select

from app.auth import authenticate
from app.batches_api import batch_view
from app.inputs import BadRequest
from app.jobs_api import page_args
from clearcut import jobs
from clearcut.db.models import Batch, Job, Usage, utcnow
from clearcut.layouts import PRESETS

bp = Blueprint("api", __name__)
# Option names broken down by /v2/usage, with the value used when the job row lacks the option.
USAGE_OPTIONS = {"format": "png", "size": "full", "channels": "rgba", "crop": False, "bg_color": None,
                 "despill": False, "model": None}


def _ctx():
    return current_app.extensions["clearcut_context"]


@bp.get("/v2/batches")
def list_batches():
    _, acct = authenticate()
    limit, cursor = page_args(default=20, maximum=100)
    query = select(Batch).where(Batch.account_id == acct.id)
    status = request.args.get("status", "").strip().lower()
    if status:
        if status not in ("processing", "completed"):
            raise BadRequest("status must be processing or completed", code="invalid_status")
        query = query.where(Batch.status == status)
    if cursor:
        stamp, last_id = jobs.decode_cursor(cursor)
        query = query.where(or_(Batch.created_at < stamp, and_(Batch.created_at == stamp, Batch.id < last_id)))
    with _ctx().db() as session:
        rows = list(session.scalars(query.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return jsonify({"object": "list", "data": [batch_view(b) for b in rows], "has_more": more,
                    "next_cursor": jobs.encode_cursor(rows[-1].created_at, rows[-1].id) if more else None})


def _int_arg(name: str, default: int, low: int, high: int, hint: str) -> int:
    raw = request.args.get(name, str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high} ({hint})", code=f"invalid_{name}")
    return value


def _option_value(options: dict, name: str) -> str:
    value = (options or {}).get(name, USAGE_OPTIONS[name])
    if value is None:
        return "default" if name == "model" else "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@bp.get("/v2/usage")
def usage():
    """Charged images (one usage row per job; replays never charge twice) by local day and by option."""
    _, acct = authenticate()
    days = _int_arg("days", 30, 1, 366, "the number of days to report, today included")
    offset = _int_arg("tz_offset_min", 0, -840, 840, "minutes east of UTC, e.g. 60 for UTC+1")
    shift = timedelta(minutes=offset)
    today = (utcnow() + shift).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=timezone.utc) - shift
    per_day: Counter[date] = Counter()
    per_option = {name: Counter() for name in (*USAGE_OPTIONS, "source")}
    total = 0.0
    query = (select(Usage.units, Usage.created_at, Job.options, Job.source)
             .join(Job, Job.id == Usage.job_id)
             .where(Usage.account_id == acct.id, Usage.created_at >= since)
             .execution_options(yield_per=2000))
    with _ctx().db() as session:
        for units, created, options, source in session.execute(query):
            created = created if created.tzinfo else created.replace(tzinfo=timezone.utc)
            units = float(units or 0)
            total += units
            per_day[(created + shift).date()] += units
            for name in USAGE_OPTIONS:
                per_option[name][_option_value(options, name)] += units
            per_option["source"][source or "v2"] += units
    return jsonify({
        "object": "usage", "account_id": acct.id, "days": days, "tz_offset_min": offset,
        "from": first.isoformat(), "to": today.isoformat(), "images": total,
        "per_day": [{"date": (first + timedelta(days=i)).isoformat(), "images": per_day[first + timedelta(days=i)]}
                    for i in range(days)],
        "per_option": {name: [{"value": value, "images": count} for value, count in counter.most_common()]
                       for name, counter in per_option.items()},
    })


def _preset_view(preset) -> dict:
    options = {name: ("#%02x%02x%02x" % value if name == "bg_color" else value)
               for name, value in preset.options.items()}
    return {"name": preset.name, "options": options, "rule": preset.rule, "source": preset.source}


@bp.get("/v2/layouts")
def layouts():
    """The ``layout`` option's values; any key may read them (they say nothing about the account)."""
    authenticate()
    return jsonify({"object": "list", "data": [_preset_view(p) for p in PRESETS.values()]})
