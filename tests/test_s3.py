"""Catalogues and datasets on S3, against moto's S3 server on loopback (only the network is faked)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pandas as pd
import pytest

from media_enrichment_prefect.flows.enrich import enrich_catalog
from media_enrichment.catalog import load_catalog, read_bytes
from media_enrichment.dataset import Dataset
from media_enrichment.errors import CatalogAccessError, CatalogError, DatasetLocationError, ImageError
from media_enrichment.pipeline.execution import ChunkResult
from media_enrichment.pipeline.staging import (
    commit_staged,
    find_staged,
    remove_staged,
    stage_chunk,
    staged_failures,
    staged_image_ids,
)


@pytest.fixture
def s3(s3, monkeypatch, tmp_path):
    """conftest's moto S3 server, with ``HOME`` moved: nothing of a remote dataset may land there."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return s3


def _parquet_keys(client, prefix: str) -> set[str]:
    listed = client.list_objects_v2(Bucket="media", Prefix=prefix).get("Contents", [])
    return {o["Key"] for o in listed if o["Key"].endswith(".parquet")}


def _upload_sample(client, sample_manifest, prefix: str, count: int) -> list[str]:
    manifest = pd.read_csv(sample_manifest, dtype=str, keep_default_na=False).head(count)
    for path in manifest["path"]:
        client.upload_file(str(sample_manifest.parent / path), "media", f"{prefix}/{path}")
    return [p for p in manifest["path"]]


def test_prefix_listing_manifest_and_errors(s3, sample_manifest):
    keys = _upload_sample(s3, sample_manifest, "incoming/2026-11-01", 5)
    s3.put_object(Bucket="media", Key="incoming/2026-11-01/readme.txt", Body=b"not an image")
    catalog = load_catalog("s3://media/incoming/2026-11-01/", s3_client=s3)
    assert catalog.kind == "s3-prefix" and sorted(catalog.frame["image_id"]) == sorted(keys)
    assert catalog.default_batch == "2026-11-01"
    assert read_bytes(catalog.frame["source_uri"][0], s3_client=s3)[:2] in (b"\xff\xd8", b"\x89P", b"RI")

    s3.put_object(Bucket="media", Key="manifests/m.csv", Body=f"image_id,path\na,../incoming/2026-11-01/{keys[0]}\n".encode())
    manifest = load_catalog("s3://media/manifests/m.csv", s3_client=s3)
    assert manifest.frame["source_uri"][0] == f"s3://media/manifests/../incoming/2026-11-01/{keys[0]}"
    with pytest.raises(CatalogError, match="no images"):
        load_catalog("s3://media/nothing-here/", s3_client=s3)
    with pytest.raises(ImageError, match="could not read"):
        read_bytes("s3://media/missing.png", s3_client=s3)


@pytest.mark.usefixtures("prefect_harness")
def test_flow_from_an_s3_prefix_into_an_s3_dataset(s3, sample_manifest):
    keys = _upload_sample(s3, sample_manifest, "incoming/b1", 4)
    dataset = "s3://media/enriched"
    summary = enrich_catalog(source="s3://media/incoming/b1/", dataset=dataset, embedding_dim=256)
    assert summary["enriched"] == 4 and summary["assets_version"] == 0 and summary["batch"] == "b1"
    rows = Dataset(dataset).read_assets()
    assert sorted(rows["image_id"]) == sorted(keys)
    assert all(uri.startswith("s3://media/incoming/b1/") for uri in rows["source_uri"])
    again = enrich_catalog(source="s3://media/incoming/b1/", dataset=dataset, embedding_dim=256)
    assert again["reused"] == 4 and again["enriched"] == 0
    listed = s3.list_objects_v2(Bucket="media", Prefix="enriched/assets/_delta_log/")["Contents"]
    assert any(obj["Key"].endswith("00000000000000000000.json") for obj in listed)
    assert not _parquet_keys(s3, "enriched/_staging/"), "staging is cleaned after the commit"
    assert not (Path.home() / ".cache" / "media-enrichment").exists(), "a remote dataset stages on S3, not locally"


def test_chunks_stage_on_s3_beside_the_dataset_and_are_found_again(s3):
    """What a Dask worker on another machine writes and the flow (or a resumed run) reads."""
    dataset = Dataset("s3://media/ds")
    assert dataset.staging_dir == "s3://media/ds/_staging"
    rows = [
        {
            "image_id": f"img-{i}", "source_uri": f"s3://media/in/{i}.png", "content_sha256": f"{i:064d}",
            "media_type": "image/png", "width": 4, "height": 3, "size_bytes": 10, "batch": "b", "attributes": None,
            "title": f"T{i}", "description": "d", "keywords": ["k"], "tags": ["t"], "ocr_texts": [],
            "embedding": [0.5, 0.5], "embedding_dim": 2, "enrichment_model": "m", "embedding_model": "e",
            "prompt_version": "p", "input_tokens": 7, "output_tokens": 3, "run_id": "r",
            "enriched_at": datetime.now(timezone.utc),
        }
        for i in range(3)
    ]
    failure = {
        "image_id": "bad", "source_uri": "s3://media/in/bad.png", "content_sha256": None, "stage": "prepare",
        "error_type": "ImageError", "message": "bad", "attempts": 1, "permanent": True, "run_id": "r",
        "at": datetime.now(timezone.utc),
    }
    staged = stage_chunk(ChunkResult(rows=rows, failures=[failure]), staging_dir=dataset.staging_dir, key="k1", run_id="r")
    assert staged.assets_path.startswith("s3://media/ds/_staging/k1/r-") and staged.assets_path.endswith(".parquet")
    key = staged.assets_path.removeprefix("s3://media/")
    assert _parquet_keys(s3, "ds/_staging/") == {key}, "one object per chunk: its rows, and its failures in the footer"

    found = find_staged(staging_dir=dataset.staging_dir, key="k1")
    assert found == staged, "a later attempt, anywhere, finds the chunk instead of paying for it again"
    assert find_staged(staging_dir=dataset.staging_dir, key="other") is None
    assert staged_image_ids([found]) == ["img-0", "img-1", "img-2"]
    assert staged_failures([found]).column("image_id").to_pylist() == ["bad"]

    # Another writer's upload cut short (no footer) is passed over and removed.
    body = s3.get_object(Bucket="media", Key=key)["Body"].read()
    s3.put_object(Bucket="media", Key="ds/_staging/k1/0-cut.parquet", Body=body[: len(body) // 2])
    assert find_staged(staging_dir=dataset.staging_dir, key="k1") == staged
    assert _parquet_keys(s3, "ds/_staging/") == {key}

    other = stage_chunk(
        ChunkResult(rows=[{**rows[0], "image_id": "img-9", "title": "T9"}]), staging_dir=dataset.staging_dir, key="k2", run_id="r"
    )
    assert commit_staged(dataset, [found, other], metadata={"run_id": "r"}) == 0
    assert sorted(dataset.read_assets()["title"]) == ["T0", "T1", "T2", "T9"]
    remove_staged([found, other])
    assert not _parquet_keys(s3, "ds/_staging/")
    assert find_staged(staging_dir=dataset.staging_dir, key="k1") is None
    # Gone meanwhile (another run committed and removed it): left out, not an error.
    assert staged_image_ids([found]) == [] and staged_failures([found]).num_rows == 0
    assert commit_staged(dataset, [found], metadata={"run_id": "r"}) is None


@pytest.mark.usefixtures("prefect_harness")
def test_an_aws_credentials_block_writes_the_s3_dataset(s3, sample_manifest, monkeypatch):
    """With no credentials in the environment, the block's identity reads the catalogue and
    writes the Delta tables and the staging area (delta-rs refuses unsigned writes)."""
    from prefect_aws import AwsCredentials

    keys = _upload_sample(s3, sample_manifest, "incoming/blk", 3)
    AwsCredentials(aws_access_key_id="AKIDBLOCK", aws_secret_access_key="block-secret", region_name="us-east-1").save(
        "media-enrichment-s3-test", overwrite=True
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")

    # The control: without the block, delta-rs cannot even read the (local catalogue's) dataset.
    with pytest.raises(Exception, match="(?i)s3"):
        enrich_catalog(source=str(sample_manifest), dataset="s3://media/unsigned", embedding_dim=256, limit=2)

    monkeypatch.setenv("MEDIA_ENRICH_AWS_CREDENTIALS_BLOCK", "media-enrichment-s3-test")
    summary = enrich_catalog(source="s3://media/incoming/blk/", dataset="s3://media/signed", embedding_dim=256)
    assert summary["enriched"] == 3 and summary["assets_version"] == 0
    options = {"AWS_ACCESS_KEY_ID": "AKIDBLOCK", "AWS_SECRET_ACCESS_KEY": "block-secret", "AWS_REGION": "us-east-1"}
    rows = Dataset("s3://media/signed", storage_options=options).read_assets()
    assert sorted(rows["image_id"]) == sorted(keys)
    assert not _parquet_keys(s3, "signed/_staging/")
    assert "block-secret" not in json.dumps(summary, default=str), "no secret in the run's summary"


@pytest.fixture
def moto_auth(s3, monkeypatch):
    """moto's IAM authorisation switched on (off by default: any credentials pass): yields a
    function that makes a user allowed only ``actions`` and signs this process's S3 calls
    with its keys. The server's setting is global: switched off again afterwards."""
    import urllib.request

    endpoint = s3.meta.endpoint_url

    def reset_auth(count: str) -> None:
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=10).read()

    iam = boto3.client("iam")

    def user_allowed(name: str, actions: list[str]) -> dict[str, str]:
        iam.create_user(UserName=name)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
        iam.put_user_policy(UserName=name, PolicyName="only", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    def sign_as(keys: dict[str, str]) -> None:
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)  # an IAM user's keys come without one
        for name, value in keys.items():
            monkeypatch.setenv(name, value)
        reset_auth("0")  # from now on every request is authenticated and authorised

    try:
        yield user_allowed, sign_as
    finally:
        reset_auth("inf")


@pytest.mark.usefixtures("prefect_harness")
def test_access_denied_on_the_catalogue_stops_the_run_before_any_chunk(s3, moto_auth, sample_manifest, tmp_path):
    """A user who may list the prefix but not read its objects: one line naming the bucket and
    the fix, no failure rows, no chunk run (nothing staged, no table)."""
    _upload_sample(s3, sample_manifest, "incoming/locked", 3)
    user_allowed, sign_as = moto_auth
    sign_as(user_allowed("lister", ["s3:ListBucket"]))
    dataset = tmp_path / "ds"
    with pytest.raises(CatalogAccessError) as caught:
        enrich_catalog(source="s3://media/incoming/locked/", dataset=str(dataset), embedding_dim=256)
    message = str(caught.value)
    assert message.startswith("access denied reading s3://media/incoming/locked/") and "\n" not in message
    assert "s3:GetObject on bucket 'media'" in message and "AWS_ACCESS_KEY_ID" in message
    assert not (dataset / "_staging").exists() and Dataset(str(dataset)).version() is None
    assert Dataset(str(dataset)).read_failures().empty, "bad credentials do not fill the failures table"


def test_refused_credentials_and_missing_buckets_are_catalogue_access_errors(s3, moto_auth, sample_manifest):
    keys = _upload_sample(s3, sample_manifest, "incoming/keys", 1)
    # Without authorisation: a missing bucket is fatal, a missing object is that image's failure.
    with pytest.raises(CatalogAccessError, match="no such bucket 'no-such-bucket'"):
        read_bytes("s3://no-such-bucket/a.png", s3_client=s3)
    with pytest.raises(CatalogAccessError, match="no such bucket 'no-such-bucket' listing"):
        load_catalog("s3://no-such-bucket/incoming/", s3_client=s3)
    with pytest.raises(ImageError, match="could not read"):
        read_bytes("s3://media/incoming/keys/missing.png", s3_client=s3)

    user_allowed, sign_as = moto_auth
    keys_of_reader = user_allowed("reader", ["s3:ListBucket", "s3:GetObject"])
    sign_as({"AWS_ACCESS_KEY_ID": "AKIAUNKNOWN000000000", "AWS_SECRET_ACCESS_KEY": "nope"})
    with pytest.raises(CatalogAccessError, match=r"credentials refused listing s3://media/incoming/keys/.*s3:ListBucket"):
        load_catalog("s3://media/incoming/keys/", s3_client=boto3.client("s3"))
    wrong_secret = boto3.client(
        "s3", aws_access_key_id=keys_of_reader["AWS_ACCESS_KEY_ID"], aws_secret_access_key="not-the-secret"
    )
    with pytest.raises(CatalogAccessError, match="credentials refused reading"):
        read_bytes(f"s3://media/incoming/keys/{keys[0]}", s3_client=wrong_secret)
    with pytest.raises(CatalogAccessError, match="credentials refused reading s3://media/m.csv"):
        load_catalog("s3://media/m.csv", s3_client=wrong_secret)  # a manifest, too
    reader = boto3.client("s3", **{k.lower(): v for k, v in keys_of_reader.items()})
    assert read_bytes(f"s3://media/incoming/keys/{keys[0]}", s3_client=reader), "the control: the right keys read it"


def test_an_s3_dataset_location_is_checked_before_any_work(s3, moto_auth):
    Dataset("s3://media/checked").check_writable()
    assert not _parquet_keys(s3, "checked/") and not [
        o["Key"] for o in s3.list_objects_v2(Bucket="media", Prefix="checked/").get("Contents", []) if "write-check" in o["Key"]
    ], "the probe is removed"
    with pytest.raises(DatasetLocationError, match="no such bucket 'no-such-bucket'.*check the bucket name"):
        Dataset("s3://no-such-bucket/ds").check_writable()

    user_allowed, sign_as = moto_auth
    sign_as(user_allowed("read-only", ["s3:ListBucket", "s3:GetObject"]))
    with pytest.raises(DatasetLocationError, match=r"access denied writing s3://media/checked/_staging: .*s3:PutObject"):
        Dataset("s3://media/checked").check_writable()
    with pytest.raises(DatasetLocationError, match="access denied"):  # a chunk staged meanwhile: not retried
        stage_chunk(ChunkResult(), staging_dir="s3://media/checked/_staging", key="k", run_id="r")
