"""Open inputs as buffered binary streams: local files, `s3://` objects and standard input (`-`).

Every stream is decompressed on the fly when its first bytes are the gzip magic (whatever its name says),
is read in chunks (memory stays flat however big the input), and turns read failures into `InputError`
with one line a user can act on. boto3 is imported only when an `s3://` input is used and takes its
credentials from the default chain (environment, profile, instance role) and its endpoint from the
standard `AWS_ENDPOINT_URL`; neither credentials nor signed URLs ever appear in a message.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import shutil
import stat
import sys
import tempfile
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from llm_shield.errors import InputError

STDIN = "-"
GZIP_MAGIC = b"\x1f\x8b"
BUFFER_SIZE = 1 << 20
#: Re-requests (with a byte range) of an S3 object whose connection dropped mid-read.
S3_READ_RETRIES = 3

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

_S3_HINTS = {
    "NoSuchKey": "the object does not exist",
    "NoSuchBucket": "the bucket does not exist",
    "AccessDenied": "access denied: check the credentials, the bucket policy and the key",
    "AllAccessDisabled": "access to this bucket is disabled",
    "InvalidBucketName": "not a valid bucket name",
    "InvalidObjectState": "the object is archived (restore it from Glacier first)",
    "InvalidAccessKeyId": "the access key id is not known to S3",
    "SignatureDoesNotMatch": "the secret key does not match the access key id",
    "ExpiredToken": "the session token has expired",
    "PermanentRedirect": "the bucket is in another region: set AWS_REGION or AWS_DEFAULT_REGION",
    "AuthorizationHeaderMalformed": "the request's region does not match the bucket's: set AWS_REGION",
    "SlowDown": "S3 is throttling requests; try again later",
}


def display(value: str) -> str:
    """`value` made safe to print and to encode as UTF-8 (undecodable bytes and lone surrogates escaped)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def cannot_read(uri: str, reason: str) -> InputError:
    return InputError(f"cannot read {display(uri)}: {reason}")


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; the key is "" or ends with "/" for a prefix."""
    bucket, sep, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise cannot_read(uri, "not a valid S3 URI (expected s3://bucket/key, or s3://bucket/prefix/ for every "
                               "object under a prefix)")
    if not sep:
        raise cannot_read(uri, f"no object key (to read every object in the bucket, add a trailing slash: "
                               f"s3://{bucket}/)")
    return bucket, key


def unsupported_scheme(uri: str) -> str | None:
    """The scheme of a URI this module cannot open (anything but s3://), else None."""
    m = _SCHEME.match(uri)
    if m and m.group(1).lower() != "s3":
        return m.group(1)
    return None


# --------------------------------------------------------------------------------------------- S3


def s3_client() -> Any:
    import boto3

    return boto3.client("s3")


def s3_reason(exc: BaseException) -> str:
    """One line naming what went wrong with an S3 call, without request ids, URLs with signatures or keys."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {}) or {}
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(err.get("Code") or status or "Error")
        if code == "403":
            code = "AccessDenied"
        hint = _S3_HINTS.get(code) or err.get("Message") or (f"HTTP {status}" if status else "request failed")
        return f"{code} ({hint})"
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return ("no usable AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "or run with an instance or task role)")
    if isinstance(exc, bx.EndpointConnectionError):
        return f"cannot connect to the S3 endpoint {exc.kwargs.get('endpoint_url', '')}".rstrip()
    if isinstance(exc, bx.ParamValidationError):
        return "not a valid S3 bucket name or key"
    if isinstance(exc, bx.BotoCoreError):
        return f"{type(exc).__name__} ({str(exc).splitlines()[0] if str(exc) else 'S3 request failed'})"
    return f"{type(exc).__name__} ({exc})"


def _s3_errors() -> tuple[type[BaseException], ...]:
    from botocore import exceptions as bx

    return (bx.ClientError, bx.BotoCoreError)


def s3_check_object(client: Any, uri: str) -> None:
    """Raise InputError unless `uri` (an object, not a prefix) exists and can be read."""
    bucket, key = parse_s3_uri(uri)
    try:
        client.head_object(Bucket=bucket, Key=key)
    except _s3_errors() as exc:
        reason = s3_reason(exc)
        if reason.startswith("404"):
            # HEAD has no body, so S3 cannot say whether the bucket or the key is missing: ask.
            try:
                client.head_bucket(Bucket=bucket)
                reason = f"NoSuchKey ({_S3_HINTS['NoSuchKey']})"
                with contextlib.suppress(*_s3_errors()):
                    listed = client.list_objects_v2(Bucket=bucket, Prefix=key + "/", MaxKeys=1)
                    if listed.get("KeyCount") or listed.get("Contents"):
                        reason = (f"NoSuchKey (the object does not exist, but it is a prefix: add a trailing slash "
                                  f"to read the objects under it: s3://{bucket}/{key}/)")
            except _s3_errors() as bexc:
                breason = s3_reason(bexc)
                reason = f"NoSuchBucket ({_S3_HINTS['NoSuchBucket']})" if breason.startswith("404") else breason
        raise cannot_read(uri, reason) from None


def s3_list_prefix(client: Any, uri: str) -> list[str]:
    """Object URIs under `s3://bucket/prefix/` (recursively), sorted, without "folder" marker keys."""
    bucket, prefix = parse_s3_uri(uri)
    keys: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", ()) if not obj["Key"].endswith("/"))
    except _s3_errors() as exc:
        raise cannot_read(uri, s3_reason(exc)) from None
    if not keys:
        raise cannot_read(uri, "no objects under this prefix")
    return [f"s3://{bucket}/{key}" for key in sorted(keys)]


class _S3Raw(io.RawIOBase):
    """An S3 object's body as a raw stream; a dropped connection is resumed with a byte-range request."""

    def __init__(self, client: Any, uri: str) -> None:
        super().__init__()
        self._client = client
        self._uri = uri
        self._bucket, self._key = parse_s3_uri(uri)
        self._pos = 0
        self._etag: str | None = None
        self._body: Any = None
        self._eof = False
        self._request()

    def _request(self) -> None:
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": self._key}
        if self._pos:
            kwargs["Range"] = f"bytes={self._pos}-"
        if self._etag:
            kwargs["IfMatch"] = self._etag
        try:
            resp = self._client.get_object(**kwargs)
        except _s3_errors() as exc:
            if self._pos and s3_reason(exc).startswith("InvalidRange"):
                self._eof = True
                return
            if self._pos and s3_reason(exc).startswith("PreconditionFailed"):
                raise cannot_read(self._uri, "the object changed while it was being read") from None
            raise cannot_read(self._uri, s3_reason(exc)) from None
        self._etag = resp.get("ETag")
        self._body = resp["Body"]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._eof or not len(buffer):
            return 0
        import urllib3.exceptions

        for attempt in range(S3_READ_RETRIES + 1):
            try:
                data = self._body.read(len(buffer))
                break
            except (*_s3_errors(), urllib3.exceptions.HTTPError, OSError) as exc:
                if attempt == S3_READ_RETRIES:
                    raise cannot_read(self._uri, f"connection lost after {self._pos} bytes ({s3_reason(exc)})") from None
                with contextlib.suppress(Exception):
                    self._body.close()
                self._request()
                if self._eof:
                    return 0
        n = len(data)
        if not n:
            self._eof = True
            return 0
        buffer[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
            self._body = None
        super().close()


# --------------------------------------------------------------------------------------------- streams


class _Chain(io.RawIOBase):
    """Raw stream serving `prefix` then `source`; turns read failures of `source` into InputError.

    Closing it leaves `source` open: the owner closes each layer.
    """

    def __init__(self, uri: str, source: Any, prefix: bytes = b"", compressed: bool = False) -> None:
        super().__init__()
        self._uri = uri
        self._source = source
        self._prefix = prefix
        self._compressed = compressed
        # read1: whatever is available (at most one read below), so a slow pipe's lines are not held back
        self._read = getattr(source, "read1", None) or source.read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        try:
            data = self._read(len(buffer))
        except InputError:
            raise
        except (OSError, EOFError, zlib.error) as exc:
            if self._compressed:
                raise cannot_read(self._uri, f"gzip data is corrupt or truncated ({exc})") from None
            raise cannot_read(self._uri, getattr(exc, "strerror", None) or str(exc)) from None
        n = len(data)
        buffer[:n] = data
        return n


def _os_reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


def check_local(path: str) -> None:
    """Raise InputError unless `path` is an existing, readable file (not a directory)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise cannot_read(path, _os_reason(exc)) from None
    if stat.S_ISDIR(st.st_mode):
        raise cannot_read(path, "it is a directory (pass the files in it, e.g. with a shell glob)")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise cannot_read(path, _os_reason(exc)) from None


@contextlib.contextmanager
def _open_raw(uri: str, stdin: BinaryIO | None, client: Any) -> Iterator[Any]:
    """A buffered binary stream of `uri`'s bytes as stored (compressed or not)."""
    if uri == STDIN:
        stream = stdin if stdin is not None else sys.stdin.buffer
        # reads go through a Chain so our close never closes the caller's stream
        with io.BufferedReader(_Chain(uri, stream), BUFFER_SIZE) as buffered:
            yield buffered
    elif is_s3(uri):
        with io.BufferedReader(_S3Raw(client or s3_client(), uri), BUFFER_SIZE) as buffered:
            yield buffered
    else:
        try:
            f = open(uri, "rb", buffering=BUFFER_SIZE)
        except OSError as exc:
            raise cannot_read(uri, _os_reason(exc)) from None
        with f:
            yield f


def _read_exactly(uri: str, stream: Any, n: int) -> bytes:
    try:
        return stream.read(n)
    except InputError:
        raise
    except OSError as exc:
        raise cannot_read(uri, _os_reason(exc)) from None


@contextlib.contextmanager
def open_input(uri: str, *, stdin: BinaryIO | None = None, client: Any = None) -> Iterator[BinaryIO]:
    """A buffered binary stream of `uri`'s content, gunzipped when it starts with the gzip magic bytes.

    `uri` is a local path, `s3://bucket/key` (read with `client`, default a new `s3_client()`) or `-`
    (`stdin`, default `sys.stdin.buffer`, left open). Failures to open or read it raise InputError, also
    when they happen mid-stream.
    """
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(_open_raw(uri, stdin, client))
        head = _read_exactly(uri, raw, len(GZIP_MAGIC))
        replay = stack.enter_context(io.BufferedReader(_Chain(uri, raw, head), BUFFER_SIZE))
        if head == GZIP_MAGIC:
            gz = stack.enter_context(gzip.GzipFile(fileobj=replay, mode="rb"))
            stream = stack.enter_context(io.BufferedReader(_Chain(uri, gz, compressed=True), BUFFER_SIZE))
        else:
            stream = replay
        yield stream  # type: ignore[misc]


@contextlib.contextmanager
def open_seekable(uri: str, *, stdin: BinaryIO | None = None, client: Any = None) -> Iterator[str | BinaryIO]:
    """A local path or a seekable temporary file holding `uri`'s (decompressed) content, for Parquet.

    Local uncompressed files are used in place; S3 objects, standard input and gzip files are streamed
    into a temporary file (in TMPDIR) that is deleted when the block ends.
    """
    if uri != STDIN and not is_s3(uri):
        try:
            with open(uri, "rb") as f:
                compressed = f.read(len(GZIP_MAGIC)) == GZIP_MAGIC
        except OSError as exc:
            raise cannot_read(uri, _os_reason(exc)) from None
        if not compressed:
            yield uri
            return
    with open_input(uri, stdin=stdin, client=client) as stream, tempfile.TemporaryFile(prefix="shield-input-") as tmp:
        try:
            shutil.copyfileobj(stream, tmp, BUFFER_SIZE)
        except OSError as exc:  # the temporary file, e.g. a full disk
            raise cannot_read(uri, f"cannot copy it to a temporary file: {_os_reason(exc)}") from None
        tmp.seek(0)
        yield tmp
