"""Large job outputs in an S3-compatible bucket (AWS S3, GCS interoperability, MinIO, R2) through boto3.

A job's output lives as chunks in the job store while it streams. When the job ends, an output larger
than ``inline_max_bytes`` (default 256 KiB) is uploaded as one object and the job keeps only a
:class:`BlobRef` to it: a Firestore document holds at most 1 MiB, and reading thousands of chunk
documents for every ``GET /v1/jobs/{id}`` is slow and billed per document. Reads then go through
:meth:`BlobStore.view`: up to ``presign_over_bytes`` the text is fetched and returned inline
(transparently), above it the client gets a presigned URL valid ``presign_ttl_s`` seconds instead.

Objects are keyed ``{prefix}/{job_id}/attempt-{attempt}.txt``, so uploading an attempt's output twice
(a duplicate report, a retried finish) overwrites it with the same bytes: idempotent. Each reference
carries the object's size and SHA-256, checked on every read.

Vendor errors are translated here: a missing object is :class:`~shared.errors.NotFound`
(``output_not_found``: e.g. removed by a bucket lifecycle rule); anything else boto3 or the network
raises is a :class:`~shared.errors.ServiceError` (``blob_store_unavailable``).

``boto3`` is imported lazily, on the first call that needs the bucket.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import NotFound, ServiceError
from shared.models import BlobRef
from shared.settings import BlobSettings

if TYPE_CHECKING:
    from botocore.client import BaseClient

__all__ = ["BlobStore", "OutputView"]


@dataclass(frozen=True, slots=True)
class OutputView:
    """An output as the API returns it: the text, or a URL to fetch it from (very large outputs)."""

    text: str | None
    url: str | None = None
    url_expires_at: float | None = None
    size_bytes: int = 0


def _vendor_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class BlobStore:
    """Output objects in one bucket. Thread-safe (boto3 clients are); one per process."""

    def __init__(self, settings: BlobSettings, *, client: BaseClient | None = None) -> None:
        if not settings.bucket:
            raise ValueError("BlobStore needs a bucket (GPUQ_BLOB_BUCKET)")
        self.settings = settings
        self._client = client
        self._lock = threading.Lock()

    # --- client ---------------------------------------------------------------------------------
    @property
    def client(self) -> BaseClient:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> BaseClient:
        import boto3
        from botocore.config import Config

        s = self.settings
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": s.addressing_style},
            connect_timeout=s.timeout_s,
            read_timeout=s.timeout_s,
            retries={"mode": "standard", "max_attempts": 3},
            request_checksum_calculation=s.checksums,
            response_checksum_validation=s.checksums,
        )
        credentials: dict[str, str] = {}
        if s.access_key_id:
            credentials = {"aws_access_key_id": s.access_key_id, "aws_secret_access_key": s.secret_access_key}
        return boto3.session.Session().client(
            "s3", endpoint_url=s.endpoint_url or None, region_name=s.region, config=config, **credentials
        )

    def _call(self, what: str, operation: str, **params: Any) -> Any:
        """One boundary for vendor errors: every bucket call goes through here."""
        try:
            return getattr(self.client, operation)(**params)
        except _vendor_errors() as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"{what}: the object is gone from the bucket", code="output_not_found") from exc
            raise ServiceError(
                f"{what} failed: {type(exc).__name__}: {_error_code(exc) or exc}", code="blob_store_unavailable"
            ) from exc

    # --- objects --------------------------------------------------------------------------------
    def key_for(self, job_id: str, attempt: int) -> str:
        return f"{self.settings.prefix.strip('/')}/{job_id}/attempt-{attempt}.txt"

    def put_output(self, job_id: str, attempt: int, text: str) -> BlobRef:
        """Upload one attempt's whole output; returns the reference to keep on the job."""
        return self.put_text(self.key_for(job_id, attempt), text, {"job-id": job_id})

    def put_text(self, key: str, text: str, metadata: dict[str, str]) -> BlobRef:
        """Upload a text object (an output, a batch file) under ``key``; returns its reference."""
        body = text.encode()
        ref = BlobRef(
            bucket=self.settings.bucket, key=key, size_bytes=len(body), sha256=hashlib.sha256(body).hexdigest()
        )
        self._call(
            f"storing {key}",
            "put_object",
            Bucket=ref.bucket,
            Key=ref.key,
            Body=body,
            ContentType="text/plain; charset=utf-8",
            Metadata={"sha256": ref.sha256, **metadata},
        )
        return ref

    def files_key(self, file_id: str) -> str:
        return f"{self.settings.prefix.strip('/')}/files/{file_id}.jsonl"

    def get(self, ref: BlobRef) -> str:
        """The output's text, checked against the reference's size and SHA-256."""
        response = self._call(f"reading {ref.key}", "get_object", Bucket=ref.bucket, Key=ref.key)
        try:
            body: bytes = response["Body"].read()
        except _vendor_errors() as exc:
            raise ServiceError(
                f"reading {ref.key} failed mid-body: {type(exc).__name__}", code="blob_store_unavailable"
            ) from exc
        finally:
            response["Body"].close()
        if len(body) != ref.size_bytes or hashlib.sha256(body).hexdigest() != ref.sha256:
            raise ServiceError(f"{ref.key} does not match its reference (size or SHA-256 differs)", code="blob_corrupt")
        return body.decode()

    def presign(self, ref: BlobRef, ttl_s: int | None = None) -> str:
        """A URL anyone holding it can GET the output from until it expires. Signs locally: no request."""
        url: str = self._call(
            f"presigning {ref.key}",
            "generate_presigned_url",
            ClientMethod="get_object",
            Params={"Bucket": ref.bucket, "Key": ref.key, "ResponseContentType": "text/plain; charset=utf-8"},
            ExpiresIn=ttl_s or self.settings.presign_ttl_s,
        )
        return url

    def delete(self, ref: BlobRef) -> None:
        """Remove the object (deleting a missing one is not an error)."""
        self._call(f"deleting {ref.key}", "delete_object", Bucket=ref.bucket, Key=ref.key)

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (dev stack and tests; production buckets come from infra)."""
        try:
            self._call("checking the bucket", "head_bucket", Bucket=self.settings.bucket)
        except NotFound:
            params: dict[str, Any] = {"Bucket": self.settings.bucket}
            if self.settings.region not in ("us-east-1", "auto"):
                params["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.region}
            self._call("creating the bucket", "create_bucket", **params)

    # --- the policy the job store's readers and writers follow ------------------------------------
    def offload(self, job_id: str, attempt: int, text: str) -> BlobRef | None:
        """Upload ``text`` if it is too large to keep inline; ``None`` means: keep it in the job store."""
        if len(text.encode()) <= self.settings.inline_max_bytes:
            return None
        return self.put_output(job_id, attempt, text)

    def view(self, ref: BlobRef, *, now: float | None = None) -> OutputView:
        """What a reader gets for an offloaded output: the text, or a presigned URL when very large."""
        if ref.size_bytes <= self.settings.presign_over_bytes:
            return OutputView(text=self.get(ref), size_bytes=ref.size_bytes)
        ttl_s = self.settings.presign_ttl_s
        return OutputView(
            text=None,
            url=self.presign(ref, ttl_s),
            url_expires_at=(now if now is not None else time.time()) + ttl_s,
            size_bytes=ref.size_bytes,
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
