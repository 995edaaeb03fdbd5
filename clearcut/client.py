"""A small, typed Python client for Clearcut's own HTTP API (``/v2``: cutouts, jobs, batches, replays,
results, account), on ``requests``.

* One ``requests.Session`` per client: connections are reused.
* Every POST carries an ``Idempotency-Key`` (a fresh UUID unless the caller names one), so a retried POST
  never creates a second job or batch.
* 429, 502, 503, 504, ``409 idempotency_in_progress`` and connection failures are retried with
  exponential back-off; a ``Retry-After`` header (seconds or an HTTP date) is honoured.
* Every error answer is raised as ``ClearcutError`` with the API's ``code``, ``status``, ``message``,
  ``request_id`` and ``details``.

    from clearcut.client import Client
    with Client("http://127.0.0.1:8080", "cc_live_…") as cc:
        job = cc.submit_job(open("shoe.jpg", "rb").read(), filename="shoe.jpg", options={"format": "webp"})
        job = cc.wait_job(job["id"])
        png = cc.download_result(job["id"])

Documented in docs/client.md.
"""
from __future__ import annotations

import email.utils
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from clearcut import errors

RETRY_STATUSES = frozenset({429, 502, 503, 504})
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
DEFAULT_URL = "http://127.0.0.1:8080"


class ClearcutError(errors.ClearcutError):
    """An error answer of the API (or no answer at all: ``code`` ``connection_error``, ``status`` 0)."""

    def __init__(self, message: str, *, code: str, status: int, request_id: str | None = None,
                 details: dict | None = None, retry_after: float | None = None):
        super().__init__(message, code=code, status=status)
        self.status = status  # 0 (no answer) must not fall back to the class default
        self.request_id = request_id
        self.details = details or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        rid = f", request {self.request_id}" if self.request_id else ""
        return f"{self.status} {self.code}: {self.message}{rid}"


@dataclass
class Cutout:
    """The answer of ``POST /v2``: the image bytes and what the headers say about them."""
    data: bytes
    content_type: str
    job_id: str | None
    width: int | None
    height: int | None
    confidence: float | None
    needs_review: bool
    headers: dict = field(repr=False, default_factory=dict)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _error_from(response: requests.Response) -> ClearcutError:
    try:
        body = response.json()
        error = body["error"] if isinstance(body, dict) and isinstance(body.get("error"), dict) else None
    except ValueError:
        error = None
    retry_after = _retry_after(response.headers.get("Retry-After"))
    if error is None:
        return ClearcutError(response.text[:200] or response.reason or "error", code="http_error",
                             status=response.status_code, request_id=response.headers.get("X-Request-ID"),
                             retry_after=retry_after)
    return ClearcutError(error.get("message") or "", code=error.get("code") or "http_error",
                         status=int(error.get("status") or response.status_code),
                         request_id=error.get("request_id") or response.headers.get("X-Request-ID"),
                         details=error.get("details") or {}, retry_after=retry_after)


class Client:
    """Clearcut's API. ``base_url`` such as ``http://127.0.0.1:8080``; ``api_key`` a ``cc_…`` key.

    ``retries`` is the number of retries after the first attempt; waits grow as ``backoff * 2**n``
    (with jitter, at most ``max_wait`` s) unless the answer says ``Retry-After``.
    """

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None, *, timeout: float = 60.0,
                 retries: int = 6, backoff: float = 0.5, max_wait: float = 120.0,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep
        self.session = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = "clearcut-client"
        if api_key:
            self.session.headers["x-api-key"] = api_key
        # Presigned result URLs are fetched without the API's headers: the key never reaches the store.
        self.storage_session = requests.Session()
        self.storage_session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=32))
        self.storage_session.headers["User-Agent"] = "clearcut-client"

    def close(self) -> None:
        self.session.close()
        self.storage_session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- transport ---------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, idempotency_key: str | None = None, **kwargs) -> requests.Response:
        """One API call with retries; raises ``ClearcutError`` for any answer of 400 or more."""
        headers = dict(kwargs.pop("headers", None) or {})
        if method.upper() == "POST":
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        kwargs.setdefault("timeout", self.timeout)
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        attempt = 0
        while True:
            try:
                response = self.session.request(method, url, headers=headers, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self.retries:
                    raise ClearcutError(f"no answer from {self.base_url}: {exc}", code="connection_error",
                                        status=0) from None
                self._wait(attempt, None)
                attempt += 1
                continue
            if response.status_code < 400:
                return response
            error = _error_from(response)
            retryable = response.status_code in RETRY_STATUSES or error.code == "idempotency_in_progress"
            if not retryable or attempt >= self.retries:
                raise error
            self._wait(attempt, error.retry_after)
            attempt += 1

    def _wait(self, attempt: int, retry_after: float | None) -> None:
        if retry_after is not None:
            delay = min(retry_after, self.max_wait)
        else:
            delay = min(self.backoff * 2 ** attempt, self.max_wait) * random.uniform(0.8, 1.2)
        self.sleep(delay)

    def _json(self, method: str, path: str, **kwargs) -> dict:
        return self.request(method, path, **kwargs).json()

    @staticmethod
    def _image_parts(image: bytes | str | Path | None, image_url: str | None, filename: str | None,
                     fields: dict) -> dict:
        if (image is None) == (image_url is None):
            raise ValueError("give exactly one of image (bytes or a path) and image_url")
        if image_url is not None:
            fields["image_url"] = image_url
            return {}
        if isinstance(image, (str, Path)):
            filename = filename or Path(image).name
            image = Path(image).read_bytes()
        return {"image_file": (filename or "image", image)}

    # --- cutouts and jobs --------------------------------------------------------------------------

    def remove(self, image: bytes | str | Path | None = None, *, image_url: str | None = None,
               filename: str | None = None, idempotency_key: str | None = None, wait_s: float = 600.0,
               **options) -> Cutout:
        """``POST /v2``: the cutout. When the server answers 202 (slow worker), waits for the job."""
        fields = {k: _form_value(v) for k, v in options.items() if v is not None}
        files = self._image_parts(image, image_url, filename, fields)
        response = self.request("POST", "/v2", data=fields, files=files or None, idempotency_key=idempotency_key,
                                headers={"Accept": "image/*"})
        if response.status_code == 202:
            job = self.wait_job(response.json()["id"], timeout=wait_s)
            response = self.request("GET", f"/v2/jobs/{job['id']}/result")
        h = response.headers
        confidence = h.get("X-Confidence")
        return Cutout(data=response.content, content_type=h.get("Content-Type", ""), job_id=h.get("X-Job-ID"),
                      width=int(h["X-Width"]) if h.get("X-Width") else None,
                      height=int(h["X-Height"]) if h.get("X-Height") else None,
                      confidence=float(confidence) if confidence else None,
                      needs_review=h.get("X-Needs-Review", "").lower() == "true", headers=dict(h))

    def submit_job(self, image: bytes | str | Path | None = None, *, image_url: str | None = None,
                   s3_key: str | None = None, filename: str | None = None, options: Mapping[str, Any] | None = None,
                   webhook_url: str | None = None, metadata: dict | None = None, priority: int | str | None = None,
                   external_id: str | None = None, output: dict | None = None,
                   idempotency_key: str | None = None) -> dict:
        """``POST /v2/jobs``: the queued job (202). The image is bytes or a path, an ``image_url``, or the
        ``s3_key`` of an object in this account's import area (see ``list_imports``)."""
        fields = {k: _form_value(v) for k, v in (options or {}).items() if v is not None}
        extra = {"webhook_url": webhook_url, "metadata": metadata, "priority": priority,
                 "external_id": external_id, "output": output}
        fields.update({k: _form_value(v) for k, v in extra.items() if v is not None})
        if s3_key is not None:
            if image is not None or image_url is not None:
                raise ValueError("give exactly one of image, image_url and s3_key")
            fields["s3_key"] = s3_key
            return self._json("POST", "/v2/jobs", data=fields, idempotency_key=idempotency_key)
        files = self._image_parts(image, image_url, filename, fields)
        return self._json("POST", "/v2/jobs", data=fields, files=files or None, idempotency_key=idempotency_key)

    def get_job(self, job_id: str) -> dict:
        return self._json("GET", f"/v2/jobs/{job_id}")

    def list_jobs(self, *, status: str | list[str] | None = None, batch: str | None = None,
                  created_after: str | None = None, created_before: str | None = None,
                  needs_review: bool | None = None, confidence_below: float | None = None, limit: int = 50,
                  cursor: str | None = None, finished_after: str | None = None) -> dict:
        """``GET /v2/jobs``: one page, ``{"data", "has_more", "next_cursor"}``."""
        params = {"status": ",".join(status) if isinstance(status, list) else status, "batch": batch,
                  "created_after": created_after, "created_before": created_before, "finished_after": finished_after,
                  "needs_review": None if needs_review is None else _form_value(needs_review),
                  "confidence_below": confidence_below, "limit": limit, "cursor": cursor}
        return self._json("GET", "/v2/jobs", params={k: v for k, v in params.items() if v is not None})

    def iter_jobs(self, **filters) -> Iterator[dict]:
        """Every job matching ``list_jobs`` filters, following the cursor (pages of 500)."""
        filters.setdefault("limit", 500)
        cursor = None
        while True:
            page = self.list_jobs(cursor=cursor, **filters)
            yield from page["data"]
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return

    def wait_job(self, job_id: str, *, timeout: float = 600.0, interval: float = 0.5) -> dict:
        """Polls ``GET /v2/jobs/{id}`` until the job is succeeded, failed or canceled."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout} s")
            self.sleep(interval)

    def cancel_job(self, job_id: str) -> dict:
        return self._json("DELETE", f"/v2/jobs/{job_id}")

    def accept_job(self, job_id: str, *, idempotency_key: str | None = None) -> dict:
        return self._json("POST", f"/v2/jobs/{job_id}/accept", idempotency_key=idempotency_key)

    def replay_job(self, job_id: str, *, options: Mapping[str, Any] | None = None, cache: bool | None = None,
                   idempotency_key: str | None = None) -> dict:
        """``POST /v2/jobs/{id}/replay``: the same job id, again, with the stored original."""
        body: dict = {}
        if options:
            body["options"] = dict(options)
        if cache is not None:
            body["cache"] = cache
        return self._json("POST", f"/v2/jobs/{job_id}/replay", json=body, idempotency_key=idempotency_key)

    def download_result(self, job_id: str, *, direct: bool = False) -> bytes:
        """``GET /v2/jobs/{id}/result``: the image bytes (``job_not_finished`` or the job's own error).

        ``direct``: ask for the result's presigned URL (``?redirect=true``) and fetch it from the object
        store, so the bytes do not pass through the API process (what a bulk download wants); when the
        store cannot be reached from here (or keeps its files on the server's disk) the bytes come
        through the API after all."""
        path = f"/v2/jobs/{job_id}/result"
        if direct:
            answer = self.request("GET", path, params={"redirect": "true"}, allow_redirects=False)
            location = answer.headers.get("Location", "")
            if answer.is_redirect and location.startswith(("http://", "https://")):
                try:
                    stored = self.storage_session.get(location, timeout=self.timeout)
                    if stored.status_code == 200:
                        return stored.content
                except (requests.ConnectionError, requests.Timeout):
                    pass
            elif not answer.is_redirect:
                return answer.content
        return self.request("GET", path).content

    # --- batches -----------------------------------------------------------------------------------

    def create_batch(self, items: list[dict], *, options: Mapping[str, Any] | None = None,
                     webhook_url: str | None = None, metadata: dict | None = None,
                     priority: int | str | None = None, idempotency_key: str | None = None) -> dict:
        """``POST /v2/batches``: items of ``image_url``, ``s3_key`` or ``asset_id`` (at most the server's limit)."""
        body: dict = {"items": items}
        extra = {"options": dict(options) if options else None, "webhook_url": webhook_url, "metadata": metadata,
                 "priority": priority}
        body.update({k: v for k, v in extra.items() if v is not None})
        return self._json("POST", "/v2/batches", json=body, idempotency_key=idempotency_key)

    def get_batch(self, batch_id: str, *, limit: int = 100, cursor: str | None = None,
                  status: str | None = None) -> dict:
        params = {"limit": limit, "cursor": cursor, "status": status}
        return self._json("GET", f"/v2/batches/{batch_id}", params={k: v for k, v in params.items() if v is not None})

    def batch_items(self, batch_id: str, *, status: str | None = None) -> Iterator[dict]:
        """Every job of a batch, following the items cursor (pages of 1000)."""
        cursor = None
        while True:
            page = self.get_batch(batch_id, limit=1000, cursor=cursor, status=status)["items"]
            yield from page["data"]
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return

    def replay_batch(self, batch_id: str, *, status: str | list[str] | None = None,
                     idempotency_key: str | None = None) -> dict:
        """``POST /v2/batches/{id}/replay``: the failed items (default) or those of ``status``."""
        params = {"status": ",".join(status) if isinstance(status, list) else status} if status else None
        return self._json("POST", f"/v2/batches/{batch_id}/replay", params=params, idempotency_key=idempotency_key)

    # --- the import area ---------------------------------------------------------------------------

    def list_imports(self, prefix: str | None = None, *, limit: int = 1000, cursor: str | None = None) -> dict:
        """``GET /v2/imports``: one page of the objects under ``prefix`` (default: this account's
        ``imports/<account id>/``), ``{"prefix", "data", "has_more", "next_cursor"}``."""
        params = {"prefix": prefix, "limit": limit, "cursor": cursor}
        return self._json("GET", "/v2/imports", params={k: v for k, v in params.items() if v is not None})

    def iter_imports(self, prefix: str | None = None, *, page_size: int = 1000) -> Iterator[dict]:
        """Every object under ``prefix`` (``key``, ``relative_key``, ``size``, ``etag``, ``last_modified``),
        in key order, following the cursor."""
        cursor = None
        while True:
            page = self.list_imports(prefix, limit=page_size, cursor=cursor)
            yield from page["data"]
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return

    # --- account -----------------------------------------------------------------------------------

    def account(self) -> dict:
        """``GET /v2/account``: key validity, mode, account and usage."""
        return self._json("GET", "/v2/account")
