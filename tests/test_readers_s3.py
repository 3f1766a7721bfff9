"""Input readers on S3: a real moto S3 server on loopback, boto3 pointed at it through AWS_ENDPOINT_URL."""

from __future__ import annotations

import gzip
import io
import json

import pytest

from llm_shield.producer import readers
from llm_shield.producer.readers import expand_inputs, iter_records
from llm_shield.errors import InputError


def put(bucket: str, key: str, data: bytes | str) -> str:
    import boto3

    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data.encode() if isinstance(data, str) else data)
    return f"s3://{bucket}/{key}"


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    assert "testing" not in message  # the (fake) credentials never show
    return message


def test_single_key_jsonl_and_text(s3_bucket: str) -> None:
    uri = put(s3_bucket, "logs/chat.jsonl", "".join(json.dumps({"id": f"r{i}", "message": {"content": f"m{i}"}}) + "\n"
                                                   for i in range(3)))
    recs = list(iter_records([uri], text_field="message.content"))
    assert [r.text for r in recs] == ["m0", "m1", "m2"]
    assert [r.id for r in recs] == [f"{uri}:1", f"{uri}:2", f"{uri}:3"]
    assert recs[0].source == {"uri": uri, "line": 1}
    assert [r.id for r in iter_records([uri], text_field="message.content", id_field="id")] == ["r0", "r1", "r2"]
    log = put(s3_bucket, "app.log", b"one\r\ntwo")
    assert [r.text for r in iter_records([log])] == ["one", "two"]


def test_gzip_csv_and_parquet_objects(s3_bucket: str, tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    gz = put(s3_bucket, "p.csv.gz", gzip.compress(b'id,prompt\n1,"a, b"\n2,c\n'))
    assert [r.text for r in iter_records([gz], csv_column="prompt")] == ["a, b", "c"]
    magic_only = put(s3_bucket, "no-suffix.jsonl", gzip.compress(b'{"text": "z"}\n'))
    assert [r.text for r in iter_records([magic_only])] == ["z"]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["p0", None, "p2"]}), path)
    pq_uri = put(s3_bucket, "t.parquet", path.read_bytes())
    recs = list(iter_records([pq_uri]))
    assert [r.text for r in recs] == ["p0", None, "p2"]
    assert recs[1].error == "row 1: column 'text' is null" and recs[1].source == {"uri": pq_uri, "row": 1}


def test_prefix_expansion(s3_bucket: str) -> None:
    b = put(s3_bucket, "in/b.txt", "b1\nb2\n")
    a = put(s3_bucket, "in/a.txt", "a1\n")
    nested = put(s3_bucket, "in/sub/c.txt", "c1\n")
    put(s3_bucket, "in/", b"")  # a "folder" marker
    put(s3_bucket, "in/sub/", b"")
    put(s3_bucket, "other/x.txt", "x\n")
    put(s3_bucket, "in-not-this/y.txt", "y\n")
    assert expand_inputs([f"s3://{s3_bucket}/in/"]) == [a, b, nested]
    recs = list(iter_records([f"s3://{s3_bucket}/in/"]))
    assert [r.text for r in recs] == ["a1", "b1", "b2", "c1"]
    assert [r.id for r in recs][:2] == [f"{a}:1", f"{b}:1"]
    assert len(expand_inputs([f"s3://{s3_bucket}/"])) == 5  # the whole bucket
    with pytest.raises(InputError, match="given more than once"):
        expand_inputs([f"s3://{s3_bucket}/in/", a])


def test_prefix_listing_pages(s3_bucket: str) -> None:
    import boto3

    from concurrent.futures import ThreadPoolExecutor

    client = boto3.client("s3")
    with ThreadPoolExecutor(16) as pool:  # over one list_objects_v2 page (1000 keys)
        list(pool.map(lambda i: client.put_object(Bucket=s3_bucket, Key=f"many/{i:05d}.txt", Body=b"x\n"),
                      range(1005)))
    uris = expand_inputs([f"s3://{s3_bucket}/many/"])
    assert len(uris) == 1005 and uris == sorted(uris)


def test_missing_key_bucket_and_bad_uris(s3_bucket: str) -> None:
    with pytest.raises(InputError) as exc:
        expand_inputs([f"s3://{s3_bucket}/nope.jsonl"])
    assert one_line(exc) == f"cannot read s3://{s3_bucket}/nope.jsonl: NoSuchKey (the object does not exist)"
    with pytest.raises(InputError) as exc:
        expand_inputs(["s3://shield-no-such-bucket-x/key.jsonl"])
    assert one_line(exc) == ("cannot read s3://shield-no-such-bucket-x/key.jsonl: NoSuchBucket "
                             "(the bucket does not exist)")
    with pytest.raises(InputError) as exc:
        expand_inputs(["s3://shield-no-such-bucket-x/prefix/"])
    assert one_line(exc).endswith("NoSuchBucket (the bucket does not exist)")
    with pytest.raises(InputError) as exc:
        expand_inputs([f"s3://{s3_bucket}/empty/"])
    assert one_line(exc) == f"cannot read s3://{s3_bucket}/empty/: no objects under this prefix"
    with pytest.raises(InputError) as exc:
        expand_inputs(["s3://"])
    assert "not a valid S3 URI" in one_line(exc)
    with pytest.raises(InputError) as exc:
        expand_inputs([f"s3://{s3_bucket}"])
    assert one_line(exc).endswith(f"add a trailing slash: s3://{s3_bucket}/)")
    with pytest.raises(InputError) as exc:
        expand_inputs(["s3://Not_A_Valid:Bucket/key"])
    one_line(exc)
    with pytest.raises(InputError):  # checked up front, before any record
        iter_records([put(s3_bucket, "ok.txt", "x\n"), f"s3://{s3_bucket}/missing.txt"])


def test_key_that_is_a_prefix_gets_a_hint(s3_bucket: str) -> None:
    put(s3_bucket, "dir/a.txt", "a\n")
    with pytest.raises(InputError) as exc:
        expand_inputs([f"s3://{s3_bucket}/dir"])
    assert one_line(exc) == (f"cannot read s3://{s3_bucket}/dir: NoSuchKey (the object does not exist, but it is a "
                             f"prefix: add a trailing slash to read the objects under it: s3://{s3_bucket}/dir/)")


def test_object_deleted_after_the_check(s3_bucket: str) -> None:
    import boto3

    uri = put(s3_bucket, "gone.txt", "x\n")
    it = iter_records([uri])
    boto3.client("s3").delete_object(Bucket=s3_bucket, Key="gone.txt")
    with pytest.raises(InputError) as exc:
        list(it)
    assert one_line(exc) == f"cannot read {uri}: NoSuchKey (the object does not exist)"


def test_no_credentials(s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches the credentials it found before
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(InputError) as exc:
        expand_inputs([f"s3://{s3_bucket}/k.txt"])
    assert "no usable AWS credentials" in one_line(exc)


def test_dropped_connection_resumes_with_a_range(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from botocore.exceptions import ResponseStreamingError

    lines = [f"line {i:06d}" for i in range(50_000)]
    uri = put(s3_bucket, "flaky.txt", "\n".join(lines) + "\n")
    real = boto3.client("s3")
    requests: list[dict] = []

    class Flaky:
        def __init__(self, body, fail_after: int | None) -> None:
            self.body, self.left = body, fail_after

        def read(self, n: int) -> bytes:
            if self.left is not None and self.left <= 0:
                raise ResponseStreamingError(error="connection reset by peer")
            data = self.body.read(n if self.left is None else min(n, self.left))
            if self.left is not None:
                self.left -= len(data)
            return data

        def close(self) -> None:
            self.body.close()

    class Client:
        def __getattr__(self, name: str):
            return getattr(real, name)

        def get_object(self, **kwargs):
            requests.append(kwargs)
            resp = real.get_object(**kwargs)
            resp["Body"] = Flaky(resp["Body"], 100_000 if len(requests) < 3 else None)
            return resp

    monkeypatch.setattr(readers, "s3_client", lambda: Client())
    recs = list(iter_records([uri]))
    assert [r.text for r in recs] == lines
    assert "Range" not in requests[0] and requests[1]["Range"] == "bytes=100000-"
    assert requests[2]["Range"] == "bytes=200000-" and requests[2]["IfMatch"] == requests[1]["IfMatch"]
    assert len(requests) == 3


def test_connection_lost_for_good_is_an_input_error(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from botocore.exceptions import ResponseStreamingError

    uri = put(s3_bucket, "dead.txt", "x\n" * 1000)
    real = boto3.client("s3")

    class Dead:
        def read(self, n: int) -> bytes:
            raise ResponseStreamingError(error="connection reset by peer")

        def close(self) -> None:
            pass

    class Client:
        def __getattr__(self, name: str):
            return getattr(real, name)

        def get_object(self, **kwargs):
            resp = real.get_object(**kwargs)
            resp["Body"].close()
            resp["Body"] = Dead()
            return resp

    monkeypatch.setattr(readers, "s3_client", lambda: Client())
    with pytest.raises(InputError) as exc:
        list(iter_records([uri]))
    assert one_line(exc).startswith(f"cannot read {uri}: connection lost after 0 bytes (ResponseStreamingError")


def test_expanded_list_is_not_checked_again(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    for i in range(5):
        put(s3_bucket, f"batch/{i}.txt", f"line {i}\n")
    real = boto3.client("s3")
    heads: list[str] = []

    class Client:
        def __getattr__(self, name: str):
            return getattr(real, name)

        def head_object(self, **kwargs):
            heads.append(kwargs["Key"])
            return real.head_object(**kwargs)

    monkeypatch.setattr(readers, "s3_client", lambda: Client())
    uris = expand_inputs([f"s3://{s3_bucket}/batch/"])
    recs = list(iter_records(uris))  # what the CLI does: expand, then read the expanded list
    assert [r.text for r in recs] == [f"line {i}" for i in range(5)]
    assert heads == []


def test_stdin_and_s3_together(s3_bucket: str) -> None:
    uri = put(s3_bucket, "a.txt", "s3 line\n")
    recs = list(iter_records(["-", uri], stdin=io.BytesIO(b"stdin line\n")))
    assert [(r.id, r.text) for r in recs] == [("-:1", "stdin line"), (f"{uri}:1", "s3 line")]
