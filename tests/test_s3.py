"""Catalogues and datasets on S3, against moto's S3 server on loopback (only the network is faked)."""

from __future__ import annotations

import socket

import boto3
import pandas as pd
import pytest

from flows.enrich import enrich_catalog
from media_enrichment.catalog import load_catalog, read_bytes
from media_enrichment.dataset import Dataset
from media_enrichment.errors import CatalogError, ImageError


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3(monkeypatch, tmp_path):
    """moto's S3 server; boto3 (AWS_ENDPOINT_URL_S3) and delta-rs (AWS_ENDPOINT_URL) pointed at it."""
    from moto.server import ThreadedMotoServer

    port = _port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": url, "AWS_ENDPOINT_URL": url, "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket="media")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the remote dataset's local staging lands here
    yield client
    server.stop()


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
