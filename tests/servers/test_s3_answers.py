"""What S3 servers answer to the requests S3Storage relies on, against AWS's documentation.

Each case sends raw requests (aiobotocore, no S3Storage) and reduces the
outcome to a short answer: ``"ok"``, ``"<status> <code>"`` or what was read
back. ``AWS`` holds the answers AWS documents (the S3 API reference and the
user guide's pages on conditional writes and deletes); a server that differs
says so in ``DIFFERENT``. moto answers as AWS documents in every case here
but one (its router loses a key with a line feed, which SeaweedFS keeps).
Where SeaweedFS differs, the comment says whether S3Storage copes:

* ``If-Match`` on a missing key: AWS answers 404 NoSuchKey, SeaweedFS 412.
  S3Storage maps both to ``VersionConflict`` (the contract's
  ``test_if_version_on_missing_key`` and ``test_delete_if_version`` pass).
* Keys: SeaweedFS stores objects as files under directories, so it refuses
  ``.``/``..`` segments and path segments over 255 bytes (S3Storage raises
  ``StorageUnavailable``: nothing is written), and it rewrites some keys
  silently: a leading ``/`` and doubled ``/`` are dropped (two keys, one
  object), and a key ending in ``/`` becomes a directory whose body is lost.
  S3Storage cannot notice those; keep such keys away from SeaweedFS.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

SERVERS = ["moto", pytest.param("seaweedfs", marks=pytest.mark.servers)]
OTHER_ETAG = '"0123456789abcdef0123456789abcdef"'

Case = Callable[[Any, str], Awaitable[str]]


async def _answer(call: Awaitable[Any]) -> str:
    from botocore.exceptions import ClientError

    try:
        await call
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{status} {exc.response.get('Error', {}).get('Code')}"
    return "ok"


async def _read(client: Any, bucket: str, key: str, **params: Any) -> bytes:
    response = await client.get_object(Bucket=bucket, Key=key, **params)
    async with response["Body"] as body:
        data: bytes = await body.read()
    return data


async def _listed(client: Any, bucket: str) -> list[str]:
    response = await client.list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in response.get("Contents", ())]


# --------------------------------------------------------------------------- #
# The cases
# --------------------------------------------------------------------------- #


async def create_only_on_an_existing_key(client: Any, bucket: str) -> str:
    await client.put_object(Bucket=bucket, Key="k", Body=b"1")
    return await _answer(client.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*"))


async def create_only_on_a_missing_key(client: Any, bucket: str) -> str:
    return await _answer(client.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*"))


async def if_match_with_the_current_etag(client: Any, bucket: str) -> str:
    put = await client.put_object(Bucket=bucket, Key="k", Body=b"1")
    return await _answer(client.put_object(Bucket=bucket, Key="k", Body=b"2", IfMatch=put["ETag"]))


async def if_match_with_a_stale_etag(client: Any, bucket: str) -> str:
    old = await client.put_object(Bucket=bucket, Key="k", Body=b"1")
    await client.put_object(Bucket=bucket, Key="k", Body=b"2")
    return await _answer(client.put_object(Bucket=bucket, Key="k", Body=b"3", IfMatch=old["ETag"]))


async def if_match_on_a_missing_key(client: Any, bucket: str) -> str:
    return await _answer(client.put_object(Bucket=bucket, Key="k", Body=b"1", IfMatch=OTHER_ETAG))


async def delete_if_match_current(client: Any, bucket: str) -> str:
    put = await client.put_object(Bucket=bucket, Key="k", Body=b"1")
    answer = await _answer(client.delete_object(Bucket=bucket, Key="k", IfMatch=put["ETag"]))
    return f"{answer}, listed {await _listed(client, bucket)}"


async def delete_if_match_stale(client: Any, bucket: str) -> str:
    await client.put_object(Bucket=bucket, Key="k", Body=b"1")
    answer = await _answer(client.delete_object(Bucket=bucket, Key="k", IfMatch=OTHER_ETAG))
    return f"{answer}, listed {await _listed(client, bucket)}"


async def delete_if_match_on_a_missing_key(client: Any, bucket: str) -> str:
    return await _answer(client.delete_object(Bucket=bucket, Key="k", IfMatch=OTHER_ETAG))


async def delete_a_missing_key(client: Any, bucket: str) -> str:
    return await _answer(client.delete_object(Bucket=bucket, Key="k"))


async def get_a_missing_key(client: Any, bucket: str) -> str:
    return await _answer(client.get_object(Bucket=bucket, Key="k"))


async def put_into_a_missing_bucket(client: Any, bucket: str) -> str:
    return await _answer(client.put_object(Bucket=bucket + "-none", Key="k", Body=b"1"))


async def get_from_a_missing_bucket(client: Any, bucket: str) -> str:
    return await _answer(client.get_object(Bucket=bucket + "-none", Key="k"))


async def same_bytes_same_etag(client: Any, bucket: str) -> str:
    # Why S3Storage wraps every value in an envelope with a nonce.
    first = await client.put_object(Bucket=bucket, Key="k", Body=b"same")
    second = await client.put_object(Bucket=bucket, Key="k", Body=b"same")
    return "same etag" if first["ETag"] == second["ETag"] else "new etag"


async def ranged_get_of_the_first_bytes(client: Any, bucket: str) -> str:
    # S3Storage reads an envelope's header this way to recognise its own write.
    await client.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    return repr(await _read(client, bucket, "k", Range="bytes=0-3"))


async def key_with_a_dot_segment(client: Any, bucket: str) -> str:
    return await _answer(client.put_object(Bucket=bucket, Key="a/../b", Body=b"1"))


async def key_with_a_256_byte_segment(client: Any, bucket: str) -> str:
    return await _answer(client.put_object(Bucket=bucket, Key="k" * 256, Body=b"1"))


async def key_with_a_leading_slash(client: Any, bucket: str) -> str:
    await client.put_object(Bucket=bucket, Key="/k", Body=b"1")
    return f"listed {await _listed(client, bucket)}"


async def key_with_a_double_slash(client: Any, bucket: str) -> str:
    await client.put_object(Bucket=bucket, Key="a//b", Body=b"1")
    return f"listed {await _listed(client, bucket)}"


async def key_with_a_trailing_slash(client: Any, bucket: str) -> str:
    await client.put_object(Bucket=bucket, Key="dir/", Body=b"body")
    return f"read {await _read(client, bucket, 'dir/')!r}"


async def key_with_a_line_feed(client: Any, bucket: str) -> str:
    key = "a\nb"
    answer = await _answer(client.put_object(Bucket=bucket, Key=key, Body=b"1"))
    if answer != "ok":
        return answer
    return f"listed {await _listed(client, bucket)}, read {await _read(client, bucket, key)!r}"


#: The answer AWS documents for each case.
AWS: dict[Case, str] = {
    create_only_on_an_existing_key: "412 PreconditionFailed",
    create_only_on_a_missing_key: "ok",
    if_match_with_the_current_etag: "ok",
    if_match_with_a_stale_etag: "412 PreconditionFailed",
    if_match_on_a_missing_key: "404 NoSuchKey",
    delete_if_match_current: "ok, listed []",
    delete_if_match_stale: "412 PreconditionFailed, listed ['k']",
    delete_if_match_on_a_missing_key: "404 NoSuchKey",
    delete_a_missing_key: "ok",
    get_a_missing_key: "404 NoSuchKey",
    put_into_a_missing_bucket: "404 NoSuchBucket",
    get_from_a_missing_bucket: "404 NoSuchBucket",
    same_bytes_same_etag: "same etag",
    ranged_get_of_the_first_bytes: "b'0123'",
    key_with_a_dot_segment: "ok",
    key_with_a_256_byte_segment: "ok",
    key_with_a_leading_slash: "listed ['/k']",
    key_with_a_double_slash: "listed ['a//b']",
    key_with_a_trailing_slash: "read b'body'",
    key_with_a_line_feed: "listed ['a\\nb'], read b'1'",
}

#: Where a server answers otherwise than AWS documents.
DIFFERENT: dict[str, dict[Case, str]] = {
    "moto": {
        key_with_a_line_feed: "404 404",  # its router loses the key; test_contract skips it
    },
    "seaweedfs": {
        if_match_on_a_missing_key: "412 PreconditionFailed",  # handled: VersionConflict
        delete_if_match_on_a_missing_key: "412 PreconditionFailed",  # handled: VersionConflict
        key_with_a_dot_segment: "400 InvalidRequest",  # StorageUnavailable, nothing written
        key_with_a_256_byte_segment: "400 KeyTooLongError",  # StorageUnavailable
        key_with_a_leading_slash: "listed ['k']",  # not detectable: two keys, one object
        key_with_a_double_slash: "listed ['a/b']",  # not detectable: two keys, one object
        key_with_a_trailing_slash: "read b''",  # not detectable: the body is lost
    },
}


@pytest.fixture(params=SERVERS)
async def s3(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Any, str]]:
    """(server name, raw client, a fresh bucket) for each server in turn."""
    name = request.param
    if name == "moto":
        endpoint = request.getfixturevalue("moto_server")
        session = endpoint.session()
    else:
        endpoint = request.getfixturevalue("seaweedfs_server")
        session = request.getfixturevalue("seaweedfs_session")
    async with session.client("s3", **endpoint.client_kwargs()) as client:
        bucket = f"ds-{uuid.uuid4().hex[:24]}"
        await client.create_bucket(Bucket=bucket)
        yield name, client, bucket


@pytest.mark.parametrize("case", list(AWS), ids=lambda case: case.__name__)
async def test_answer(s3: tuple[str, Any, str], case: Case) -> None:
    name, client, bucket = s3
    expected = DIFFERENT[name].get(case, AWS[case])
    assert await case(client, bucket) == expected
