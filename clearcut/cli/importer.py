"""``clearcut import``: a catalog import against a running server, resumable, with a report.

Sources: folders (walked recursively; results keep the tree under ``OUT/<folder name>/``), image files
(``OUT/<name>``) and CSV files of ``image_url[,external_id]`` rows, or with a header row naming
``image_url``, ``external_id`` and any per-item options (``format``, ``bg_color``, …). Local files are
uploaded as ``POST /v2/jobs`` (one job each, ``external_id`` = the item); URLs go in
``POST /v2/batches`` of at most ``--batch-size`` items (the worker fetches them through the SSRF guard).

State: ``OUT/.clearcut-import.jsonl`` records, one JSON line per event, each item's job id and outcome
and each batch created. Running the same command again reads it back, skips finished items, uploads
nothing twice and waits on the jobs already queued. Every POST's ``Idempotency-Key`` is derived from
the item (its name, its content's sha256 and the request's options), so a run killed between a POST
and its state line still never creates a second job.

At the end ``OUT/report.csv`` has one row per item (``item,job_id,status,error_code,result_path,
confidence``; ``status`` is ``succeeded`` or ``failed``, or ``skipped`` / ``queued`` for items skipped
by ``--skip-existing`` or left by an interrupted run) and ``OUT/review.txt`` lists the cutouts flagged
``needs_review``. ``--replay-failed`` replays the failed jobs (with this run's options). The exit code is
0 when every item succeeded, 1 when any failed, 130 when interrupted (Ctrl-C; run it again to continue).
"""
from __future__ import annotations

import csv
import hashlib
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from clearcut import config
from clearcut.cli.remove import IMAGE_SUFFIXES, add_image_options, option_fields
from clearcut.errors import ClearcutError
from clearcut.options import parse

STATE = ".clearcut-import.jsonl"
REPORT = "report.csv"
REVIEW = "review.txt"
REPORT_FIELDS = ["item", "job_id", "status", "error_code", "result_path", "confidence"]
EXTENSIONS = {"jpeg": "jpg", "tif": "tiff"}
FATAL_STATUSES = {0, 401, 403}  # no server, or this key cannot work: stop instead of failing every item


@dataclass
class Item:
    key: str                     # the item's name in report.csv
    kind: str                    # "file" or "url"
    source: str                  # a local path or an image_url
    result: str                  # the result's path relative to OUT
    external_id: str | None = None
    options: dict = field(default_factory=dict)  # this item's options (the run's, then the CSV's)


def register(sub) -> None:
    p = sub.add_parser("import", help="import a catalog through a running server (resumable)")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="folders, image files, CSV files of image URLs")
    p.add_argument("-o", "--output", required=True, help="output folder (results, state, report.csv)")
    p.add_argument("--server", help="the API's base URL (default: CLEARCUT_URL)")
    p.add_argument("--key", help="API key (default: CLEARCUT_API_KEY)")
    add_image_options(p)
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="any other /v2 option (e.g. a layout option), repeatable")
    p.add_argument("--priority", help="0-9 or low/normal/high (default 5)")
    p.add_argument("--webhook-url", help="receives job.succeeded / job.failed (and batch.completed)")
    p.add_argument("--batch-size", type=int, help="URL items per batch (default and maximum: "
                                                  "CLEARCUT_BATCH_MAX_ITEMS)")
    p.add_argument("--concurrency", type=int, default=4, help="uploads and downloads in flight (default 4)")
    p.add_argument("--replay-failed", action="store_true", help="replay the items that failed in an earlier run")
    p.add_argument("--skip-existing", action="store_true", help="skip items whose result file already exists")
    p.add_argument("--yes", action="store_true", help="do not ask before submitting more than --confirm-above")
    p.add_argument("--confirm-above", type=int, default=1000, help="ask before submitting more items (default 1000)")
    p.add_argument("--poll-interval", type=float, default=1.0, help="seconds between status polls (default 1)")
    p.add_argument("--timeout", type=float, default=0, help="give up waiting after this many seconds (0: never)")
    p.set_defaults(func=run)


# --- items ------------------------------------------------------------------------------------------

def _extension(fmt: str | None) -> str:
    fmt = (fmt or "png").strip().lower()
    return EXTENSIONS.get(fmt, fmt)


def _safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in text).strip("._")
    return cleaned[:150] or hashlib.sha256(text.encode()).hexdigest()[:16]


def _csv_items(path: Path, options: dict) -> list[Item]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    header = ["image_url", "external_id"]
    if rows and rows[0][0].strip().lower() == "image_url":
        header, rows = [cell.strip().lower() for cell in rows[0]], rows[1:]
    items = []
    for number, row in enumerate(rows, start=1):
        values = {name: cell.strip() for name, cell in zip(header, row) if cell.strip()}
        url = values.pop("image_url", "")
        if not url:
            raise ValueError(f"{path}: row {number} has no image_url")
        external = values.pop("external_id", None)
        merged = {**options, **values}
        parse(merged)  # per-item options are validated before anything is sent
        name = _safe_name(external) if external else f"row-{number:05d}"
        items.append(Item(key=external or url, kind="url", source=url, external_id=external, options=merged,
                          result=f"{path.stem}/{name}.{_extension(merged.get('format'))}"))
    return items


def collect(sources: list[str], options: dict) -> list[Item]:
    """The items of every source, in a stable order; raises ValueError on a missing source or a clash."""
    ext = _extension(options.get("format"))
    items: list[Item] = []
    for raw in sources:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                relative = file.relative_to(path).as_posix()
                items.append(Item(key=f"{path.name}/{relative}", kind="file", source=str(file), options=options,
                                  result=f"{path.name}/{Path(relative).with_suffix('.' + ext).as_posix()}"))
        elif path.is_file() and path.suffix.lower() == ".csv":
            items.extend(_csv_items(path, options))
        elif path.is_file():
            items.append(Item(key=path.name, kind="file", source=str(path), options=options,
                              result=path.with_suffix("." + ext).name))
        else:
            raise ValueError(f"{raw}: no such file or folder")
    seen: dict[str, str] = {}
    for item in items:
        for name in (item.key, item.result):
            if name in seen and seen[name] != item.source:
                raise ValueError(f"two items share the name {name!r} ({seen[name]} and {item.source}); "
                                 "rename one or import them separately")
            seen[name] = item.source
    return items


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:48]


# --- state ------------------------------------------------------------------------------------------

class State:
    """The JSON-lines log in OUT: later lines win; a torn last line (a killed run) is ignored."""

    def __init__(self, out: Path):
        self.path = out / STATE
        self.items: dict[str, dict] = {}
        self.lock = threading.Lock()
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                self._apply(event)
        self.handle = self.path.open("a", encoding="utf-8")

    def _apply(self, event: dict) -> None:
        if "batch" in event:
            for key, job_id in event["jobs"].items():
                self.items.setdefault(key, {}).update(job_id=job_id, status="queued", batch=event["batch"],
                                                      created_at=event.get("created_at"))
        else:
            self.items.setdefault(event["item"], {}).update({k: v for k, v in event.items() if k != "item"})

    def record(self, event: dict) -> None:
        with self.lock:
            self._apply(event)
            self.handle.write(json.dumps(event) + "\n")
            self.handle.flush()

    def close(self) -> None:
        self.handle.close()


# --- the run ----------------------------------------------------------------------------------------

class Import:
    def __init__(self, args, client, items: list[Item], out: Path, state: State, options: dict):
        self.args, self.cc, self.items, self.out, self.state = args, client, items, out, state
        self.options = options  # the run's options (a CSV row's own ones are per item)
        self.by_key = {item.key: item for item in items}
        self.bar = None

    def _job_fields(self) -> dict:
        return {"priority": self.args.priority, "webhook_url": self.args.webhook_url}

    def _fatal(self, exc: ClearcutError) -> bool:
        return exc.status in FATAL_STATUSES or exc.code in ("rate_limited", "idempotency_conflict")

    def upload(self, item: Item) -> None:
        data = Path(item.source).read_bytes()
        external = item.key if len(item.key) <= 200 else None
        key = "import-" + _digest("file", item.key, hashlib.sha256(data).hexdigest(), item.options,
                                  self._job_fields())
        try:
            job = self.cc.submit_job(data, filename=Path(item.source).name, options=item.options,
                                     external_id=external, idempotency_key=key, **self._job_fields())
        except ClearcutError as exc:
            if self._fatal(exc):
                raise
            self.state.record({"item": item.key, "job_id": None, "status": "failed", "error_code": exc.code})
            return
        self.state.record({"item": item.key, "job_id": job["id"], "status": "queued",
                           "created_at": job["created_at"]})

    def submit_batches(self, items: list[Item]) -> None:
        size = min(self.args.batch_size or config.get("CLEARCUT_BATCH_MAX_ITEMS"),
                   config.get("CLEARCUT_BATCH_MAX_ITEMS"))
        shared = self.options
        for start in range(0, len(items), size):
            chunk = items[start:start + size]
            wire_ids = {}
            payload = []
            for item in chunk:
                wire = item.external_id or (item.source if len(item.source) <= 200 else
                                            "url-" + hashlib.sha256(item.source.encode()).hexdigest()[:24])
                wire_ids[wire] = item.key
                entry = {"image_url": item.source, "external_id": wire}
                own = {k: v for k, v in item.options.items() if shared.get(k) != v}
                if own:
                    entry["options"] = own
                payload.append(entry)
            key = "import-batch-" + _digest(payload, shared, self._job_fields())
            batch = self.cc.create_batch(payload, options=shared,
                                         metadata={"import": "clearcut import"}, idempotency_key=key,
                                         priority=self.args.priority, webhook_url=self.args.webhook_url)
            jobs = {wire_ids[job["external_id"]]: job["id"] for job in self.cc.batch_items(batch["id"])
                    if job.get("external_id") in wire_ids}
            self.state.record({"batch": batch["id"], "jobs": jobs, "created_at": batch["created_at"]})

    def replay(self, item: Item, row: dict) -> None:
        number = int(row.get("replays") or 0) + 1
        key = "import-replay-" + _digest(row["job_id"], number, item.options)
        try:
            self.cc.replay_job(row["job_id"], options={k: v for k, v in item.options.items() if v is not None},
                               idempotency_key=key)
        except ClearcutError as exc:
            if self._fatal(exc):
                raise
            self.state.record({"item": item.key, "replays": number, "status": "failed", "error_code": exc.code})
            return
        self.state.record({"item": item.key, "replays": number, "status": "queued", "error_code": None})

    def download(self, key: str, job: dict) -> None:
        item = self.by_key[key]
        target = self.out / item.result
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        try:
            partial.write_bytes(self.cc.download_result(job["id"]))
        except ClearcutError as exc:
            if self._fatal(exc):
                raise
            self.state.record({"item": key, "status": "failed", "error_code": exc.code})
            return
        partial.replace(target)
        confidence = (job.get("result") or {}).get("confidence")
        self.state.record({"item": key, "status": "succeeded", "error_code": None, "result_path": item.result,
                           "confidence": confidence, "needs_review": bool(job.get("needs_review"))})

    def finish(self, key: str, job: dict) -> None:
        """A job seen finished: failed/canceled are recorded, succeeded ones are downloaded."""
        if job["status"] == "succeeded":
            self.download(key, job)
        else:
            code = (job.get("error") or {}).get("code") or f"job_{job['status']}"
            self.state.record({"item": key, "status": "failed", "error_code": code})

    def counts(self) -> dict:
        found = {"succeeded": 0, "failed": 0, "queued": 0}
        for item in self.items:
            status = self.state.items.get(item.key, {}).get("status")
            if status in found:
                found[status] += 1
        return found

    def progress(self) -> None:
        if self.bar is not None:
            c = self.counts()
            self.bar.n = c["succeeded"] + c["failed"] + self.skipped
            self.bar.set_postfix(done=c["succeeded"], failed=c["failed"], queued=c["queued"], refresh=False)
            self.bar.refresh()

    def wait(self, pool: ThreadPoolExecutor) -> None:
        deadline = time.monotonic() + self.args.timeout if self.args.timeout else None
        while True:
            pending = {self.state.items[i.key]["job_id"]: i.key for i in self.items
                       if self.state.items.get(i.key, {}).get("status") == "queued"
                       and self.state.items[i.key].get("job_id")}
            if not pending:
                return
            stamps = [self.state.items[k].get("created_at") for k in pending.values()]
            since = min((datetime.fromisoformat(s) for s in stamps if s), default=None)
            finished = []
            for job in self.cc.iter_jobs(status=["succeeded", "failed", "canceled"],
                                         created_after=(since - timedelta(seconds=2)).isoformat() if since else None):
                if job["id"] in pending:
                    finished.append((pending.pop(job["id"]), job))
            for future in as_completed([pool.submit(self.finish, key, job) for key, job in finished]):
                future.result()
                self.progress()
            if not finished:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{len(pending)} items still queued after {self.args.timeout:g} s")
                time.sleep(self.args.poll_interval)

    def run(self) -> None:
        from tqdm import tqdm

        rows = self.state.items
        done = {"succeeded", "failed"}
        self.skipped = 0
        todo_files, todo_urls, replays = [], [], []
        for item in self.items:
            row = rows.get(item.key, {})
            status = row.get("status")
            if status == "succeeded" and not (self.out / item.result).exists():
                row["status"] = "queued"  # the result was deleted: download it again
            elif status == "failed" and self.args.replay_failed:
                if row.get("job_id"):
                    replays.append((item, row))
                else:
                    (todo_files if item.kind == "file" else todo_urls).append(item)
            elif status in done or row.get("job_id"):
                continue
            elif self.args.skip_existing and (self.out / item.result).exists():
                self.state.record({"item": item.key, "status": "skipped", "result_path": item.result})
            else:
                (todo_files if item.kind == "file" else todo_urls).append(item)
        self.skipped = sum(rows.get(i.key, {}).get("status") == "skipped" for i in self.items)
        new = len(todo_files) + len(todo_urls) + len(replays)
        if new > self.args.confirm_above and not self.args.yes and not _confirm(new):
            raise ClearcutError(f"{new} items to submit; pass --yes to go ahead", code="not_confirmed", status=400)
        with ThreadPoolExecutor(max_workers=max(1, self.args.concurrency)) as pool, \
                tqdm(total=len(self.items), unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
            self.bar = bar
            try:
                for future in as_completed([pool.submit(self.upload, item) for item in todo_files]):
                    future.result()
                    self.progress()
                if todo_urls:
                    self.submit_batches(todo_urls)
                for item, row in replays:
                    self.replay(item, row)
                self.progress()
                self.wait(pool)
                self.progress()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    def report(self) -> dict:
        flagged = []
        with (self.out / REPORT).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=REPORT_FIELDS)
            writer.writeheader()
            for item in self.items:
                row = self.state.items.get(item.key, {})
                confidence = row.get("confidence")
                writer.writerow({"item": item.key, "job_id": row.get("job_id") or "",
                                 "status": row.get("status") or "queued", "error_code": row.get("error_code") or "",
                                 "result_path": row.get("result_path") or "",
                                 "confidence": "" if confidence is None else f"{confidence:.4f}"})
                if row.get("status") == "succeeded" and row.get("needs_review"):
                    flagged.append((confidence if confidence is not None else 0.0, item.key))
        flagged.sort()
        (self.out / REVIEW).write_text("".join(f"{key}\t{score:.4f}\n" for score, key in flagged), encoding="utf-8")
        return {**self.counts(), "skipped": self.skipped, "review": len(flagged)}


def _confirm(count: int) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"submit {count} items? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def run(args) -> int:
    from clearcut.client import Client

    fields = option_fields(args)
    options = {k: v for k, v in fields.items() if v is not None}
    try:
        for pair in args.option:
            name, sep, value = pair.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"--option {pair!r}: write NAME=VALUE, such as padding=5%")
            options[name.strip().lower()] = value
        parse(options)
        items = collect(args.sources, options)
        if not items:
            raise ValueError("no images found in the sources")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    server = args.server or config.get("CLEARCUT_URL")
    key = args.key or config.get("CLEARCUT_API_KEY")
    if not key:
        print("error: no API key: pass --key or set CLEARCUT_API_KEY", file=sys.stderr)
        return 2
    state = State(out)
    interrupted = False
    with Client(server, key) as client:
        job = Import(args, client, items, out, state, options)
        try:
            job.run()
        except KeyboardInterrupt:
            interrupted = True
        except TimeoutError as exc:
            print(f"error: {exc}", file=sys.stderr)
            interrupted = True
        finally:
            summary = job.report()
            state.close()
    print(f"{summary['succeeded']} succeeded, {summary['failed']} failed, {summary['queued']} queued, "
          f"{summary['skipped']} skipped, {summary['review']} to review; report: {out / REPORT}", file=sys.stderr)
    if interrupted:
        print("interrupted: run the same command again to continue", file=sys.stderr)
        return 130
    return 1 if summary["failed"] else 0
