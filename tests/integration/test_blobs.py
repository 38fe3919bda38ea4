"""Large outputs in a bucket: against moto's S3 server on 127.0.0.1 with the real boto3 client."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator

import httpx
import pytest
from moto.server import ThreadedMotoServer

from shared.errors import GpuqError, NotFound, ServiceError
from shared.models import BlobRef
from shared.settings import BlobSettings
from shared.store.blobs import BlobStore


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()  # returns once the server thread is serving
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def settings_for(url: str, bucket: str, **overrides: object) -> BlobSettings:
    values: dict[str, object] = {
        "bucket": bucket,
        "endpoint_url": url,
        "region": "us-east-1",
        "access_key_id": "testing",
        "secret_access_key": "testing",
        "addressing_style": "path",
        "inline_max_bytes": 1024,
        "presign_over_bytes": 64 * 1024,
        "presign_ttl_s": 600,
        "timeout_s": 2.0,
    }
    values.update(overrides)
    return BlobSettings.model_validate(values)


@pytest.fixture
def blobs(s3_url: str, request: pytest.FixtureRequest) -> Iterator[BlobStore]:
    bucket = "gpuq-" + hashlib.sha1(request.node.name.encode()).hexdigest()[:12]
    store = BlobStore(settings_for(s3_url, bucket))
    store.ensure_bucket()
    yield store
    store.close()


def test_an_output_round_trips_and_its_reference_describes_it(blobs: BlobStore) -> None:
    text = "héllo ✓ " * 50_000
    ref = blobs.put_output("job_1", 1, text)
    body = text.encode()
    assert ref == BlobRef(
        bucket=blobs.settings.bucket,
        key="gpuq/outputs/job_1/attempt-1.txt",
        size_bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
    )
    assert blobs.get(ref) == text
    head = blobs.client.head_object(Bucket=ref.bucket, Key=ref.key)
    assert head["ContentType"] == "text/plain; charset=utf-8" and head["ContentLength"] == len(body)


def test_uploading_the_same_attempt_twice_is_idempotent_and_attempts_stay_apart(blobs: BlobStore) -> None:
    first = blobs.put_output("job_1", 1, "one")
    assert blobs.put_output("job_1", 1, "one") == first
    second = blobs.put_output("job_1", 2, "two")
    assert second.key != first.key
    assert (blobs.get(first), blobs.get(second)) == ("one", "two")
    listed = blobs.client.list_objects_v2(Bucket=blobs.settings.bucket, Prefix="gpuq/outputs/job_1/")
    assert sorted(obj["Key"] for obj in listed["Contents"]) == [first.key, second.key]


def test_small_outputs_stay_inline_large_ones_are_offloaded(blobs: BlobStore) -> None:
    limit = blobs.settings.inline_max_bytes
    assert blobs.offload("job_1", 1, "x" * limit) is None
    assert blobs.offload("job_1", 1, "é" * (limit // 2 + 1)) is not None  # the limit counts bytes, not chars
    ref = blobs.offload("job_2", 1, "y" * (limit + 1))
    assert ref is not None and ref.size_bytes == limit + 1


def test_a_mid_size_output_is_returned_as_text_a_huge_one_as_a_working_presigned_url(blobs: BlobStore) -> None:
    mid = blobs.put_output("job_mid", 1, "m" * 10_000)
    assert blobs.view(mid).text == "m" * 10_000
    huge_text = "h" * (blobs.settings.presign_over_bytes + 1)
    huge = blobs.put_output("job_huge", 1, huge_text)
    view = blobs.view(huge, now=1000.0)
    assert view.text is None and view.url is not None and view.url_expires_at == 1600.0
    assert "X-Amz-Signature=" in view.url and "X-Amz-Expires=600" in view.url
    response = httpx.get(view.url)  # anyone holding the URL, no credentials
    assert response.status_code == 200 and response.text == huge_text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_a_missing_object_is_not_found_and_a_changed_one_is_refused(blobs: BlobStore) -> None:
    ref = blobs.put_output("job_1", 1, "original")
    blobs.client.put_object(Bucket=ref.bucket, Key=ref.key, Body=b"tampered")
    with pytest.raises(ServiceError) as corrupt:
        blobs.get(ref)
    assert corrupt.value.code == "blob_corrupt"
    blobs.delete(ref)
    blobs.delete(ref)  # deleting twice is fine
    with pytest.raises(NotFound) as gone:
        blobs.get(ref)
    assert gone.value.code == "output_not_found"


def test_ensure_bucket_is_idempotent(blobs: BlobStore) -> None:
    blobs.ensure_bucket()
    blobs.ensure_bucket()
    names = [b["Name"] for b in blobs.client.list_buckets()["Buckets"]]
    assert names.count(blobs.settings.bucket) == 1


def test_no_vendor_exception_slips_through(s3_url: str) -> None:
    no_bucket = BlobStore(settings_for(s3_url, "gpuq-never-created"))
    down = BlobStore(settings_for(f"http://127.0.0.1:{_free_port()}", "gpuq-x", timeout_s=0.5))
    ref = BlobRef(bucket="gpuq-never-created", key="k", size_bytes=1, sha256="0" * 64)
    calls = {
        "put to a missing bucket": lambda: no_bucket.put_output("job_1", 1, "x"),
        "get from a missing bucket": lambda: no_bucket.get(ref),
        "put to a dead endpoint": lambda: down.put_output("job_1", 1, "x"),
        "get from a dead endpoint": lambda: down.get(ref.model_copy(update={"bucket": "gpuq-x"})),
        "ensure on a dead endpoint": down.ensure_bucket,
    }
    try:
        for name, call in calls.items():
            with pytest.raises(GpuqError) as caught:
                call()
            assert isinstance(caught.value, ServiceError), name
            assert caught.value.code == "blob_store_unavailable", name
    finally:
        no_bucket.close()
        down.close()


def test_settings_come_from_gpuq_blob_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUQ_BLOB_BUCKET", "outputs")
    monkeypatch.setenv("GPUQ_BLOB_ENDPOINT_URL", "https://storage.googleapis.com")
    monkeypatch.setenv("GPUQ_BLOB_INLINE_MAX_BYTES", "1000")
    loaded = BlobSettings()
    assert (loaded.bucket, loaded.endpoint_url, loaded.inline_max_bytes) == (
        "outputs",
        "https://storage.googleapis.com",
        1000,
    )
    assert BlobSettings.model_fields["inline_max_bytes"].default == 256 * 1024
    with pytest.raises(ValueError):
        BlobStore(BlobSettings(bucket=""))
