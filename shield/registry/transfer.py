"""Byte streams from file://, http(s):// and s3:// URLs, for model files and catalogs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from llm_shield.errors import ModelUnavailableError

CHUNK = 1 << 20


def parse_s3(url: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URL."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ModelUnavailableError(f"{url} is not an s3://bucket/key URL")
    return parts.netloc, parts.path.lstrip("/")


def file_path(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


def _http_pool():  # type: ignore[no-untyped-def]
    import urllib3

    retry = urllib3.util.Retry(total=4, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504))
    return urllib3.PoolManager(retries=retry, timeout=urllib3.Timeout(connect=10, read=60))


@contextmanager
def open_url(url: str) -> Iterator[BinaryIO]:
    """A readable binary stream of `url`. Errors become ModelUnavailableError with the reason."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        try:
            with open(file_path(url), "rb") as f:
                yield f
        except OSError as exc:
            raise ModelUnavailableError(f"cannot read {url}: {exc.strerror or exc}") from None
    elif scheme in ("http", "https"):
        import urllib3

        try:
            resp = _http_pool().request("GET", url, preload_content=False)
        except urllib3.exceptions.HTTPError as exc:
            raise ModelUnavailableError(f"cannot download {url}: {exc}") from None
        try:
            if resp.status != 200:
                raise ModelUnavailableError(f"cannot download {url}: HTTP {resp.status}")
            yield resp  # type: ignore[misc]
        finally:
            resp.release_conn()
    elif scheme == "s3":
        import boto3
        import botocore.exceptions

        bucket, key = parse_s3(url)
        try:
            body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise ModelUnavailableError(f"cannot download {url}: {code}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise ModelUnavailableError(f"cannot download {url}: {exc}") from None
        try:
            yield body
        finally:
            body.close()
    else:
        raise ModelUnavailableError(f"unsupported URL scheme in {url}: use file://, http(s):// or s3://")


def read_url(url: str) -> bytes:
    with open_url(url) as stream:
        return stream.read()
