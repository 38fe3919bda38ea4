"""Where large outputs go."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings.values import KIB, MIB

__all__ = ["BlobSettings"]


class BlobSettings(BaseSettings):
    """Where large outputs go. ``GPUQ_BLOB_*`` environment variables; no bucket = outputs stay inline."""

    model_config = SettingsConfigDict(env_prefix="GPUQ_BLOB_", extra="ignore")

    bucket: str = Field("", description="Bucket for large outputs; empty keeps every output in the job store.")
    endpoint_url: str = Field(
        "",
        description="S3 API endpoint: empty for AWS; https://storage.googleapis.com "
        "(GCS interoperability), https://<account>.r2.cloudflarestorage.com (R2), "
        "http://127.0.0.1:9000 (MinIO).",
    )
    region: str = Field("us-east-1", description="Signing region (R2: auto; GCS: auto or the bucket's region).")
    access_key_id: str = Field("", description="Access key (GCS: an HMAC key). Empty: boto3's default chain.")
    secret_access_key: str = Field("", description="Secret of the access key.")
    prefix: str = Field("gpuq/outputs", description="Key prefix of the output objects.")
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="Bucket in the path or the host name (MinIO and moto: path)."
    )
    checksums: Literal["when_required", "when_supported"] = Field(
        "when_required",
        description="boto3's request checksums. when_supported (its default since 1.36) "
        "sends headers GCS interoperability and some S3 clones refuse.",
    )
    inline_max_bytes: int = Field(256 * KIB, description="Outputs up to this size stay in the job store.")
    presign_over_bytes: int = Field(
        8 * MIB, description="Outputs over this size are answered with a presigned URL instead of the text."
    )
    presign_ttl_s: int = Field(3600, description="Validity of a presigned output URL.")
    timeout_s: float = Field(10.0, description="Connect and read timeout of each bucket call.")

    def enabled(self) -> bool:
        return bool(self.bucket)
