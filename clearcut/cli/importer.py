"""``clearcut import``: a catalog import against a running server, resumable, with a report.

Sources (``clearcut.cli.import_items``): folders, image files, CSV files of image URLs and ``s3:PREFIX``
prefixes of the account's import area in the server's bucket. Local files are uploaded as
``POST /v2/jobs`` (``external_id`` = the item), once per distinct content: files with the same bytes share
that job, and each still gets its own report row and result file. URLs and import objects go in
``POST /v2/batches`` of at most ``--batch-size`` items (the worker fetches them: URLs through the SSRF
guard, objects from the bucket).

State: ``OUT/.clearcut-import.jsonl`` records, one JSON line per event, each item's job id and outcome
and each batch created. Running the same command again reads it back, skips finished items, uploads
nothing twice and waits on the jobs already queued. Every POST's ``Idempotency-Key`` is derived from
the items (a file's name and sha256, a URL, an object's key and ETag) and the request's options, so a run
killed between a POST and its state line still never creates a second job.

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
from datetime import datetime, timedelta
from pathlib import Path

from clearcut import config
from clearcut.cli.import_items import S3, Item, collect
from clearcut.cli.remove import add_image_options, option_fields
from clearcut.errors import ClearcutError
from clearcut.options import parse

STATE = ".clearcut-import.jsonl"
REPORT = "report.csv"
REVIEW = "review.txt"
REPORT_FIELDS = ["item", "job_id", "status", "error_code", "result_path", "confidence"]
FULL_SWEEP_S = 30.0  # wait(): how often a poll lists every finished job again
FINISH_MARGIN_S = 5.0  # wait(): how far before the latest end seen a poll looks
FATAL_STATUSES = {0, 401, 403}  # no server, or this key cannot work: stop instead of failing every item


def register(sub) -> None:
    p = sub.add_parser("import", help="import a catalog through a running server (resumable)")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="folders, image files, CSV files of image URLs, s3:PREFIX (imports/{account}/... "
                        "in the server's bucket)")
    p.add_argument("-o", "--output", required=True, help="output folder (results, state, report.csv)")
    p.add_argument("--server", help="the API's base URL (default: CLEARCUT_URL)")
    p.add_argument("--key", help="API key (default: CLEARCUT_API_KEY)")
    add_image_options(p)
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="any other /v2 option (e.g. a layout option), repeatable")
    p.add_argument("--priority", help="0-9 or low/normal/high (default 5)")
    p.add_argument("--webhook-url", help="receives job.succeeded / job.failed (and batch.completed)")
    p.add_argument("--batch-size", type=int, help="URL and s3: items per batch (default and maximum: "
                                                  "CLEARCUT_BATCH_MAX_ITEMS)")
    p.add_argument("--concurrency", type=int, default=4, help="uploads and downloads in flight (default 4)")
    p.add_argument("--replay-failed", action="store_true", help="replay the items that failed in an earlier run")
    p.add_argument("--skip-existing", action="store_true", help="skip items whose result file already exists")
    p.add_argument("--yes", action="store_true", help="do not ask before submitting more than --confirm-above")
    p.add_argument("--confirm-above", type=int, default=1000, help="ask before submitting more items (default 1000)")
    p.add_argument("--poll-interval", type=float, default=1.0, help="seconds between status polls (default 1)")
    p.add_argument("--timeout", type=float, default=0, help="give up waiting after this many seconds (0: never)")
    p.set_defaults(func=run)


# --- keys ---------------------------------------------------------------------------------------

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
        self.skipped = 0

    def _job_fields(self) -> dict:
        return {"priority": self.args.priority, "webhook_url": self.args.webhook_url}

    def _fatal(self, exc: ClearcutError) -> bool:
        return exc.status in FATAL_STATUSES or exc.code in ("rate_limited", "idempotency_conflict")

    def _queued(self, items: list[Item], job: dict, content: str | None = None) -> None:
        for item in items:
            self.state.record({"item": item.key, "job_id": job["id"], "status": "queued",
                               "created_at": job.get("created_at"), **({"content": content} if content else {})})

    def _failed(self, items: list[Item], code: str, **extra) -> None:
        for item in items:
            self.state.record({"item": item.key, **extra, "status": "failed", "error_code": code})

    # --- local files: one upload per distinct content ---------------------------------------------

    def upload_files(self, pool: ThreadPoolExecutor, files: list[Item]) -> None:
        """Files with the same bytes (and options) share one upload and one job: the first of them in
        the sources' order is uploaded; a content already uploaded by an earlier run is not sent again."""
        digests = dict(zip([i.key for i in files], pool.map(_sha256, [i.source for i in files])))
        earlier = {row["content"]: row for row in self.state.items.values() if row.get("content") and row.get("job_id")}
        groups: dict[str, list[Item]] = {}
        for item in files:
            groups.setdefault(_digest("content", digests[item.key], item.options, self._job_fields()), []).append(item)
        uploads = []
        for content, members in groups.items():
            row = earlier.get(content)
            if row is not None:
                self._queued(members, {"id": row["job_id"], "created_at": row.get("created_at")}, content)
            else:
                uploads.append(pool.submit(self.upload, members, content))
        for future in as_completed(uploads):
            future.result()
            self.progress()

    def upload(self, members: list[Item], content: str) -> None:
        item = members[0]
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
            self._failed(members, exc.code, job_id=None)
            return
        self._queued(members, job, content)

    # --- URLs and import objects: batches ------------------------------------------------------

    def submit_batches(self, items: list[Item]) -> None:
        """URL and ``s3:`` items in ``POST /v2/batches`` of at most --batch-size; a batch's Idempotency-Key
        is derived from its items (URLs; object keys with their ETags) and the options."""
        size = min(self.args.batch_size or config.get("CLEARCUT_BATCH_MAX_ITEMS"),
                   config.get("CLEARCUT_BATCH_MAX_ITEMS"))
        shared = self.options
        for start in range(0, len(items), size):
            chunk = items[start:start + size]
            wire_ids = {}
            payload = []
            for item in chunk:
                name = item.source if item.kind == "url" else item.key
                wire = item.external_id or (name if len(name) <= 200 else
                                            f"{item.kind}-" + hashlib.sha256(name.encode()).hexdigest()[:24])
                wire_ids[wire] = item.key
                entry = {"image_url" if item.kind == "url" else "s3_key": item.source, "external_id": wire}
                own = {k: v for k, v in item.options.items() if shared.get(k) != v}
                if own:
                    entry["options"] = own
                payload.append(entry)
            etags = [item.etag for item in chunk if item.kind == "s3"]
            key = "import-batch-" + _digest(payload, shared, self._job_fields(), *([etags] if etags else []))
            batch = self.cc.create_batch(payload, options=shared,
                                         metadata={"import": "clearcut import"}, idempotency_key=key,
                                         priority=self.args.priority, webhook_url=self.args.webhook_url)
            jobs = {wire_ids[job["external_id"]]: job["id"] for job in self.cc.batch_items(batch["id"])
                    if job.get("external_id") in wire_ids}
            self.state.record({"batch": batch["id"], "jobs": jobs, "created_at": batch["created_at"]})

    def replay(self, pairs: list[tuple[Item, dict]]) -> None:
        """Replay one failed job (shared by every item in ``pairs``)."""
        item, row = pairs[0]
        items = [i for i, _ in pairs]
        number = int(row.get("replays") or 0) + 1
        key = "import-replay-" + _digest(row["job_id"], number, item.options)
        try:
            self.cc.replay_job(row["job_id"], options={k: v for k, v in item.options.items() if v is not None},
                               idempotency_key=key)
        except ClearcutError as exc:
            if self._fatal(exc):
                raise
            self._failed(items, exc.code, replays=number)
            return
        for each in items:
            self.state.record({"item": each.key, "replays": number, "status": "queued", "error_code": None})

    # --- results ---------------------------------------------------------------------------------

    def download(self, keys: list[str], job: dict) -> None:
        """The job's result, fetched once and written for every item it is the result of."""
        try:
            data = self.cc.download_result(job["id"], direct=True)
        except ClearcutError as exc:
            if self._fatal(exc):
                raise
            self._failed([self.by_key[k] for k in keys], exc.code)
            return
        confidence = (job.get("result") or {}).get("confidence")
        for key in keys:
            item = self.by_key[key]
            target = self.out / item.result
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            partial.write_bytes(data)
            partial.replace(target)
            self.state.record({"item": key, "status": "succeeded", "error_code": None, "result_path": item.result,
                               "confidence": confidence, "needs_review": bool(job.get("needs_review"))})

    def finish(self, keys: list[str], job: dict) -> None:
        """A job seen finished: failed/canceled are recorded, succeeded ones are downloaded."""
        if job["status"] == "succeeded":
            self.download(keys, job)
        else:
            code = (job.get("error") or {}).get("code") or f"job_{job['status']}"
            self._failed([self.by_key[k] for k in keys], code)

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
        """Polls the account's finished jobs until every queued item has ended.

        A poll asks only for jobs that finished since the latest end it has seen (less FINISH_MARGIN_S,
        for workers whose commits land late): listing every finished job created since the oldest
        pending one returned ever more of them as an import drained. Every FULL_SWEEP_S a poll lists
        them all again, so a job that ended without a finish time (canceled) is never missed."""
        deadline = time.monotonic() + self.args.timeout if self.args.timeout else None
        latest_end: datetime | None = None
        next_sweep = 0.0
        while True:
            pending: dict[str, list[str]] = {}
            for item in self.items:
                row = self.state.items.get(item.key, {})
                if row.get("status") == "queued" and row.get("job_id"):
                    pending.setdefault(row["job_id"], []).append(item.key)
            if not pending:
                return
            stamps = [self.state.items[k].get("created_at") for keys in pending.values() for k in keys]
            since = min((datetime.fromisoformat(s) for s in stamps if s), default=None)
            finished = []
            sweep = latest_end is None or time.monotonic() >= next_sweep
            if sweep:
                next_sweep = time.monotonic() + FULL_SWEEP_S
            after = None if sweep else (latest_end - timedelta(seconds=FINISH_MARGIN_S)).isoformat()
            for job in self.cc.iter_jobs(status=["succeeded", "failed", "canceled"], finished_after=after,
                                         created_after=(since - timedelta(seconds=2)).isoformat() if since else None):
                if job.get("finished_at"):
                    end = datetime.fromisoformat(job["finished_at"])
                    latest_end = end if latest_end is None else max(latest_end, end)
                if job["id"] in pending:
                    finished.append((pending.pop(job["id"]), job))
            for future in as_completed([pool.submit(self.finish, keys, job) for keys, job in finished]):
                future.result()
                self.progress()
            if not finished:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{sum(map(len, pending.values()))} items still queued after "
                                       f"{self.args.timeout:g} s")
                time.sleep(self.args.poll_interval)

    def run(self) -> None:
        from tqdm import tqdm

        rows = self.state.items
        done = {"succeeded", "failed"}
        todo_files, todo_remote, replays = [], [], {}
        for item in self.items:
            row = rows.get(item.key, {})
            status = row.get("status")
            if status == "succeeded" and not (self.out / item.result).exists():
                row["status"] = "queued"  # the result was deleted: download it again
            elif status == "failed" and self.args.replay_failed:
                if row.get("job_id"):
                    replays.setdefault(row["job_id"], []).append((item, row))
                else:
                    (todo_files if item.kind == "file" else todo_remote).append(item)
            elif status in done or row.get("job_id"):
                continue
            elif self.args.skip_existing and (self.out / item.result).exists():
                self.state.record({"item": item.key, "status": "skipped", "result_path": item.result})
            else:
                (todo_files if item.kind == "file" else todo_remote).append(item)
        self.skipped = sum(rows.get(i.key, {}).get("status") == "skipped" for i in self.items)
        new = len(todo_files) + len(todo_remote) + sum(map(len, replays.values()))
        if new > self.args.confirm_above and not self.args.yes and not _confirm(new):
            raise ClearcutError(f"{new} items to submit; pass --yes to go ahead", code="not_confirmed", status=400)
        with ThreadPoolExecutor(max_workers=max(1, self.args.concurrency)) as pool, \
                tqdm(total=len(self.items), unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
            self.bar = bar
            try:
                self.upload_files(pool, todo_files)
                if todo_remote:
                    self.submit_batches(todo_remote)
                for pairs in replays.values():
                    self.replay(pairs)
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


def _sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _confirm(count: int) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"submit {count} items? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _with_account(sources: list[str], client) -> list[str]:
    """``{account}`` in an ``s3:`` source is this key's account id (asked once, only when used)."""
    found: list[str] = []

    def account_id() -> str:
        if not found:
            found.append(client.account()["account"]["id"])
        return found[0]

    return [raw.replace("{account}", account_id()) if raw.startswith(S3) and "{account}" in raw else raw
            for raw in sources]


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
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = args.server or config.get("CLEARCUT_URL")
    key = args.key or config.get("CLEARCUT_API_KEY")
    if not key:
        print("error: no API key: pass --key or set CLEARCUT_API_KEY", file=sys.stderr)
        return 2
    with Client(server, key) as client:
        try:
            items = collect(_with_account(args.sources, client), options, client.iter_imports)
            if not items:
                raise ValueError("no images found in the sources")
        except (ValueError, ClearcutError) as exc:  # a missing source, a clash, a listing refused
            print(f"error: {exc}", file=sys.stderr)
            return 2
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        state = State(out)
        interrupted = False
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
