"""OpenAI's Files API, for batches: ``POST /v1/files``, ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``.

A file is a store record (``openai_file/<id>``: id, owner, filename, purpose, bytes, created_at) with its
content inline when small; a larger one goes to the object bucket when one is configured
(``GPUQ_BLOB_BUCKET``), else into the store in parts of ``PART_BYTES``. Only ``purpose`` ``batch`` (the
caller's input) and ``batch_output`` (a batch's output and error files, written by gpuq) exist.
"""

from __future__ import annotations

import secrets
from typing import Any

from shared.controlplane import ControlPlane
from shared.errors import InvalidRequest, NotFound, PayloadTooLarge
from shared.models import BlobRef

__all__ = ["FILE_KIND", "MAX_FILE_BYTES", "PART_BYTES", "create_file", "file_content", "file_object", "get_file"]

FILE_KIND = "openai_file"
PART_KIND = "openai_file_part"
INLINE_BYTES = 256 * 1024
PART_BYTES = 512 * 1024
MAX_FILE_BYTES = 100 * 1024 * 1024


def file_object(record: dict[str, Any]) -> dict[str, Any]:
    """The record as OpenAI's file object."""
    return {
        "id": record["id"],
        "object": "file",
        "bytes": record["bytes"],
        "created_at": int(record["created_at"]),
        "filename": record["filename"],
        "purpose": record["purpose"],
        "status": "processed",
        "status_details": None,
    }


def create_file(cp: ControlPlane, owner: str, *, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
    """Store a file; its record (with ``owner``) is returned."""
    if purpose not in ("batch", "batch_output"):
        raise InvalidRequest(f"purpose: {purpose!r} is not supported (only 'batch')", param="purpose")
    if len(content) > MAX_FILE_BYTES:
        raise PayloadTooLarge(f"file is {len(content)} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        text = content.decode()
    except UnicodeDecodeError:
        raise InvalidRequest("file: must be UTF-8 text (JSONL)", param="file") from None
    file_id = f"file-{secrets.token_hex(12)}"
    record: dict[str, Any] = {
        "id": file_id,
        "owner": owner,
        "filename": filename[:255] or "upload.jsonl",
        "purpose": purpose,
        "bytes": len(content),
        "created_at": cp.clock.now(),
    }
    if len(content) <= INLINE_BYTES:
        record["content"] = text
    elif cp.blobs is not None:
        ref = cp.blobs.put_text(cp.blobs.files_key(file_id), text, {"file-id": file_id})
        record["blob"] = ref.model_dump()
    else:
        parts = [text[i : i + PART_BYTES] for i in range(0, len(text), PART_BYTES)]
        for n, part in enumerate(parts):
            cp.store.put_record(PART_KIND, f"{file_id}:{n}", {"text": part})
        record["parts"] = len(parts)
    cp.store.put_record(FILE_KIND, file_id, record)
    return record


def get_file(cp: ControlPlane, owner: str, file_id: str) -> dict[str, Any]:
    record = cp.store.get_record(FILE_KIND, file_id)
    if record is None or record.get("owner") != owner:
        raise NotFound(f"no file {file_id!r}", code="file_not_found", param="file_id")
    return record


def file_content(cp: ControlPlane, record: dict[str, Any]) -> str:
    if "content" in record:
        return str(record["content"])
    if "blob" in record:
        if cp.blobs is None:
            raise NotFound(f"file {record['id']} is in a bucket this deployment no longer has", code="file_not_found")
        return cp.blobs.get(BlobRef.model_validate(record["blob"]))
    texts = []
    for n in range(int(record.get("parts", 0))):
        part = cp.store.get_record(PART_KIND, f"{record['id']}:{n}")
        texts.append(str((part or {}).get("text", "")))
    return "".join(texts)
