"""S3 backend (boto3). Works with AWS S3 and with SeaweedFS, which ``clearcut dev`` runs locally.

Path-style addressing and SigV4 are forced: S3-compatible servers on ``127.0.0.1:port`` have no
per-bucket DNS names, and SigV4 is the only signature all of them accept.
"""
from __future__ import annotations

from typing import Mapping

from clearcut import config
from clearcut.storage.base import Storage, StoredObject
from clearcut.storage.errors import ObjectNotFound, StorageError

_MISSING = {"404", "NoSuchKey", "NotFound"}


def make_client(endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1", *,
                connect_timeout: float = 3.0, read_timeout: float = 30.0, max_attempts: int = 3):
    """A boto3 S3 client for ``endpoint`` (SigV4, path-style, bounded timeouts and retries)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
        ),
    )


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CLEARCUT_S3_* settings, with the endpoint resolved (empty: the local ``clearcut dev`` one)."""
    from clearcut.endpoints import s3_endpoint

    env = dict(environ) if environ is not None else None
    return {
        "CLEARCUT_S3_ENDPOINT": s3_endpoint(env),
        "CLEARCUT_S3_BUCKET": config.get("CLEARCUT_S3_BUCKET", env),
        "CLEARCUT_S3_ACCESS_KEY": config.get("CLEARCUT_S3_ACCESS_KEY", env),
        "CLEARCUT_S3_SECRET_KEY": config.get("CLEARCUT_S3_SECRET_KEY", env),
        "CLEARCUT_S3_REGION": config.get("CLEARCUT_S3_REGION", env),
    }


class S3Storage(Storage):
    """Objects in one bucket. Every botocore failure surfaces as ``StorageError`` (or
    ``ObjectNotFound``), so callers never import botocore to handle an outage."""

    def __init__(self, bucket: str, client):
        self.bucket = bucket
        self.client = client

    @classmethod
    def from_settings(cls, environ: Mapping[str, str] | None = None, **client_options) -> "S3Storage":
        s = settings_from_env(environ)
        client = make_client(s["CLEARCUT_S3_ENDPOINT"], s["CLEARCUT_S3_ACCESS_KEY"],
                             s["CLEARCUT_S3_SECRET_KEY"], s["CLEARCUT_S3_REGION"], **client_options)
        return cls(s["CLEARCUT_S3_BUCKET"], client)

    def _fail(self, exc: Exception, action: str, key: str | None = None) -> StorageError:
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self.bucket}/{key}" if key else f"bucket {self.bucket!r}"
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if key and code in _MISSING:
                return ObjectNotFound(f"no object {key!r}", key=key)
            message = exc.response.get("Error", {}).get("Message") or code
            return StorageError(f"object store refused to {action} {where}: {code} {message}".strip(),
                                s3_code=code)
        if isinstance(exc, BotoCoreError):
            return StorageError(f"object store unreachable while trying to {action} {where}: {exc}")
        raise exc  # not a storage fault: a bug, let it surface as is

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except Exception as exc:
            raise self._fail(exc, "write", key) from exc

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        try:
            if max_bytes is None:
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            # A Range request: an object of any size costs at most max_bytes of memory and transfer.
            return self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{max_bytes - 1}")["Body"].read()
        except Exception as exc:
            raise self._fail(exc, "read", key) from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except Exception as exc:
            error = self._fail(exc, "look up", key)
            if isinstance(error, ObjectNotFound):
                return False
            raise error from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            error = self._fail(exc, "delete", key)
            if not isinstance(error, ObjectNotFound):
                raise error from exc

    def list(self, prefix: str, *, start_after: str | None = None, limit: int = 1000) -> tuple[list[StoredObject], bool]:
        params = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": int(limit)}
        if start_after:
            params["StartAfter"] = start_after
        try:
            page = self.client.list_objects_v2(**params)
        except Exception as exc:
            raise self._fail(exc, "list", prefix) from exc
        found = [StoredObject(o["Key"], int(o.get("Size") or 0), str(o.get("ETag") or "").strip('"'),
                              o.get("LastModified")) for o in page.get("Contents") or []]
        return found, bool(page.get("IsTruncated")) and bool(found)

    def presigned_url(self, key: str, expires_s: int = 3600) -> str:
        # Signing is local (no request is made), so this cannot detect an outage.
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=int(expires_s))

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (used by ``clearcut dev`` and the test fixtures)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in {"404", "NoSuchBucket", "NotFound"}:
                raise self._fail(exc, "find") from exc
        except Exception as exc:
            raise self._fail(exc, "find") from exc
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"BucketAlreadyOwnedByYou",
                                                                 "BucketAlreadyExists"}:
                raise self._fail(exc, "create") from exc
        except Exception as exc:
            raise self._fail(exc, "create") from exc

    def check(self) -> dict:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise self._fail(exc, "open") from exc
        return {"backend": "s3", "endpoint": self.client.meta.endpoint_url, "bucket": self.bucket}
