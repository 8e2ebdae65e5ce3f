"""A manifest is untrusted input: what it names is read only inside the allowed roots, only if it
is a regular file, only up to the byte limit, and nothing of a file's content reaches a message.

Runs go through the library driver with the local provider (no Prefect, no subprocess); S3
against moto's server on loopback.
"""

from __future__ import annotations

import csv
import json
import os
import threading
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from media_enrichment.catalog import Roots, load_catalog, read_bytes, roots_for
from media_enrichment.config import Settings, build_settings, split_roots
from media_enrichment.dataset import Dataset
from media_enrichment.errors import (
    CatalogError,
    ImageError,
    ImageTooLargeError,
    PathNotAllowedError,
)
from media_enrichment.images.decode import inspect_image
from media_enrichment.pipeline.driver import open_run

SECRET = "SECRET-CONTENT-1234"
LIMIT = 200_000  # bytes: the test's max_image_bytes


def _png(path: Path, colour=(200, 30, 30), size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _manifest(folder: Path, rows: dict[str, str], name: str = "catalog.csv") -> Path:
    manifest = folder / name
    with manifest.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["image_id", "path"])
        for image_id, path in rows.items():
            writer.writerow([image_id, path])
    return manifest


def _run(settings: Settings, source: str, run_id: str = "run-1", timeout: float = 120):
    """The driver's steps, in a thread: a read of the FIFO would block it forever."""
    outcome: dict = {}

    def steps() -> None:
        try:
            with open_run(settings, source, run_id) as run:
                plan = run.plan(run.load_catalog())
                run.check_access(plan)
                staged = [run.run_chunk(items) for items in run.chunks(plan)]
                outcome["summary"] = run.summary(plan, staged, run.commit(staged, plan))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    worker = threading.Thread(target=steps, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), "the run hung: something blocking (a FIFO, a device) was read"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["summary"]


@pytest.fixture
def hostile(tmp_path):
    """A catalogue folder whose manifest mixes good images with every kind of hostile row."""
    root = tmp_path / "catalog"
    outside = tmp_path / "outside"
    _png(root / "good-a.png", (200, 30, 30))
    _png(root / "sub" / "good-b.png", (30, 200, 30))
    _png(outside / "outside.png", (30, 30, 200))
    (outside / "secret.txt").write_text(f"{SECRET}\nroot:x:0:0:not really\n")
    (root / "notes.png").write_text(f"{SECRET} is a text file named like an image\n")  # inside: read, not an image
    (root / "link-image.png").symlink_to(outside / "outside.png")
    (root / "link-secret.png").symlink_to(outside / "secret.txt")
    (root / "link-zero.png").symlink_to("/dev/zero")
    (root / "link-null.png").symlink_to("/dev/null")
    os.mkfifo(root / "fifo.png")
    (root / "folder.png").mkdir()
    with open(root / "big.png", "wb") as big:  # sparse: no disk used
        big.write(b"\x89PNG\r\n\x1a\n")
        big.truncate(LIMIT + 1)
    depth = len(root.resolve().parts)
    rows = {
        "good-a": "good-a.png",
        "good-b": "sub/good-b.png",
        "notes": "notes.png",
        "dotdot-image": "../outside/outside.png",
        "dotdot-secret": "../outside/secret.txt",
        "dotdot-etc": "../" * depth + "etc/hostname",
        "abs-etc": "/etc/hostname",
        "abs-passwd": "/etc/passwd",
        "abs-image": str(outside / "outside.png"),
        "link-image": "link-image.png",
        "link-secret": "link-secret.png",
        "dev-zero": "/dev/zero",
        "dev-link-zero": "link-zero.png",
        "dev-link-null": "link-null.png",
        "fifo": "fifo.png",
        "folder": "folder.png",
        "big": "big.png",
    }
    return root, outside, _manifest(root, rows)


REFUSED_PATHS = {
    "dotdot-image", "dotdot-secret", "dotdot-etc", "abs-etc", "abs-passwd", "abs-image", "link-image",
    "link-secret", "dev-zero", "dev-link-zero", "dev-link-null", "fifo", "folder",
}


def _settings(tmp_path: Path, **extra) -> Settings:
    return Settings(provider="local", dataset=str(tmp_path / "ds"), embedding_dim=256, max_image_bytes=LIMIT, **extra)


def _everything_stored(dataset: Path) -> str:
    """The dataset's tables as text, and every file under it (staging included) as text."""
    store = Dataset(str(dataset))
    parts = [store.read_assets().to_json(date_format="iso"), store.read_failures().to_json(date_format="iso")]
    for path in dataset.rglob("*"):
        if path.is_file():
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


@pytest.mark.slow  # a run with the local provider: OCR, 1-3 s an image (14-19 s)
def test_hostile_rows_are_refused_before_a_byte_is_read(hostile, tmp_path):
    root, _, manifest = hostile
    summary = _run(_settings(tmp_path), str(manifest))

    store = Dataset(str(tmp_path / "ds"))
    assert sorted(store.read_assets()["image_id"]) == ["good-a", "good-b"], "every good image enriched"
    failures = store.read_failures().set_index("image_id")
    assert summary.enriched == 2 and summary.failed == len(REFUSED_PATHS) + 2
    for image_id in REFUSED_PATHS:
        row = failures.loc[image_id]
        assert (row["stage"], row["error_type"]) == ("read", "PathNotAllowedError"), (image_id, row["message"])
        assert pd.isna(row["content_sha256"]), "nothing was hashed: nothing was read"
    big = failures.loc["big"]
    assert (big["stage"], big["error_type"]) == ("read", "ImageTooLargeError")
    assert f"{LIMIT + 1:,} bytes" in big["message"] and "MEDIA_ENRICH_MAX_IMAGE_BYTES" in big["message"]

    outside = failures.loc["dotdot-image", "message"]
    assert "outside the allowed roots" in outside and f"the manifest's folder {root.resolve()}" in outside
    assert "--allow-root" in outside and "MEDIA_ENRICH_ALLOWED_ROOTS" in outside
    # The row names the path the manifest gave; its message, where the link leads.
    link = failures.loc["link-secret"]
    assert link["source_uri"] == str(root.resolve() / "link-secret.png")
    assert f"a link to {(tmp_path / 'outside' / 'secret.txt').resolve()}" in link["message"]
    assert "a FIFO, not a regular file" in failures.loc["fifo", "message"]
    assert "a directory, not a regular file" in failures.loc["folder", "message"]

    notes = failures.loc["notes"]  # inside the root: read, and described without its bytes
    assert notes["stage"] != "read" and notes["error_type"] == "ImageError"
    assert notes["message"].startswith("not an image (text, ") and "bytes)" in notes["message"]

    stored = _everything_stored(tmp_path / "ds") + json.dumps(summary.as_dict(), default=str)
    assert SECRET not in stored, "a file's content reached the dataset"
    assert "root:x:0" not in stored and "file starts with" not in stored


@pytest.mark.slow  # runs with the local provider: OCR, 1-3 s an image (21-33 s)
def test_allowed_roots_widen_where_images_are_read(hostile, tmp_path):
    _, outside, manifest = hostile
    _run(_settings(tmp_path, allowed_roots=(str(outside),)), str(manifest))
    store = Dataset(str(tmp_path / "ds"))
    enriched = set(store.read_assets()["image_id"])
    assert enriched == {"good-a", "good-b", "dotdot-image", "abs-image", "link-image"}
    failures = store.read_failures().set_index("image_id")
    for image_id in ("dotdot-secret", "link-secret"):  # now read: a text file, described by kind only
        assert failures.loc[image_id, "stage"] != "read"
        assert failures.loc[image_id, "message"].startswith("not an image (text, ")
    for image_id in ("abs-etc", "abs-passwd", "dotdot-etc", "dev-zero", "fifo", "folder"):
        assert failures.loc[image_id, "error_type"] == "PathNotAllowedError"
    assert SECRET not in _everything_stored(tmp_path / "ds")


def test_a_device_inside_an_allowed_root_is_still_refused(tmp_path):
    roots = roots_for(tmp_path / "m.csv", ["/dev"])
    for device in ("/dev/zero", "/dev/null"):
        with pytest.raises(PathNotAllowedError, match="a character device, not a regular file"):
            read_bytes(device, roots=roots)


def test_a_folder_source_is_its_own_root(tmp_path):
    root = tmp_path / "folder"
    _png(root / "in.png")
    _png(tmp_path / "elsewhere" / "out.png")
    (root / "out.png").symlink_to(tmp_path / "elsewhere" / "out.png")
    catalog = load_catalog(root)
    assert sorted(catalog.frame["image_id"]) == ["in.png", "out.png"]
    roots = roots_for(root)
    assert read_bytes(catalog.frame["source_uri"][0], roots=roots)[:4] == b"\x89PNG"
    with pytest.raises(PathNotAllowedError, match=f"a link to .*elsewhere.*the folder {root.resolve()}"):
        read_bytes(str(root / "out.png"), roots=roots)


def test_a_sibling_folder_with_the_roots_name_as_prefix_is_outside(tmp_path):
    _png(tmp_path / "cat-other" / "x.png")
    roots = roots_for(tmp_path / "cat" / "m.csv")
    with pytest.raises(PathNotAllowedError):
        read_bytes(str(tmp_path / "cat-other" / "x.png"), roots=roots)


def test_the_byte_limit_is_checked_before_reading_and_while_reading(tmp_path, monkeypatch):
    path = _png(tmp_path / "a.png")
    size = path.stat().st_size
    assert read_bytes(str(path), max_bytes=size) == path.read_bytes()
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        read_bytes(str(path), max_bytes=size - 1)

    # A file that grows between its stat and its read is still caught: at most limit+1 bytes read.
    real_stat = os.stat

    def stale_stat(target, *args, **kwargs):
        found = real_stat(target, *args, **kwargs)
        if str(target) == str(path):
            fields = list(found)
            fields[6] = 10  # st_size as it was before the file grew
            return os.stat_result(fields)
        return found

    reads: list[int] = []
    real_read = os.read

    def counted_read(fd, n):
        data = real_read(fd, n)
        reads.append(len(data))
        return data

    monkeypatch.setattr(os, "stat", stale_stat)
    monkeypatch.setattr(os, "read", counted_read)
    with pytest.raises(ImageTooLargeError):
        read_bytes(str(path), max_bytes=100)
    assert sum(reads) == 101


def test_a_manifest_s3_row_outside_the_roots_is_refused_without_a_client(tmp_path):
    _png(tmp_path / "a.png")
    manifest = _manifest(tmp_path, {"a": "a.png", "remote": "s3://other/secret.png"})
    roots = roots_for(manifest)
    with pytest.raises(PathNotAllowedError, match="outside the allowed roots"):
        read_bytes(load_catalog(manifest).frame["source_uri"][1], roots=roots)


def test_messages_name_the_kind_of_file_never_its_bytes():
    cases = {
        b"root:x:0:0:root:/root:/bin/bash\n": "not an image (text, 32 bytes)",
        b"%PDF-1.7\n" + SECRET.encode(): "not an image (PDF, 28 bytes)",
        b"PK\x03\x04" + SECRET.encode(): "not an image (ZIP archive, ",
        b"\x00\x01\x02\x03" + SECRET.encode(): "not an image (binary data, ",
        b"<html><body>" + SECRET.encode(): "not an image (HTML, ",
        b"\x00\x00\x00\x18ftypheic" + SECRET.encode(): "unsupported image format (HEIC/HEIF, ",
        b"\x00\x00\x00\x1cftypavif" + SECRET.encode(): "unsupported image format (AVIF, ",
        b"<?xml version='1.0'?><svg>" + SECRET.encode(): "unsupported image format (SVG, ",
    }
    for data, expected in cases.items():
        with pytest.raises(ImageError) as caught:
            inspect_image(data)
        message = str(caught.value)
        assert message.startswith(expected), message
        assert SECRET not in message and "root:x" not in message and "b'" not in message


def test_allowed_roots_from_the_environment(monkeypatch):
    monkeypatch.setenv("MEDIA_ENRICH_ALLOWED_ROOTS", f"/data/a{os.pathsep}s3://bucket/p,/data/c")
    assert build_settings().allowed_roots == ("/data/a", "s3://bucket/p", "/data/c")
    monkeypatch.setenv("MEDIA_ENRICH_ALLOWED_ROOTS", '["/x", "s3://b"]')
    assert build_settings().allowed_roots == ("/x", "s3://b")
    assert build_settings({"allowed_roots": ["/given"]}).allowed_roots == ("/given",), "a parameter beats the variable"
    assert split_roots("s3://a/b:s3://c") == ["s3://a/b", "s3://c"]
    monkeypatch.setenv("MEDIA_ENRICH_ALLOWED_ROOTS", "ftp://nope")
    with pytest.raises(Exception, match="MEDIA_ENRICH_ALLOWED_ROOTS"):
        build_settings()


# -- S3 ----------------------------------------------------------------------------------------


@pytest.fixture
def s3(s3):
    """conftest's moto S3 server, with a second bucket ``other`` beside ``media``."""
    s3.create_bucket(Bucket="other")
    return s3


def _png_bytes(colour=(10, 120, 200)) -> bytes:
    import io

    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, "PNG")
    return out.getvalue()


def test_an_s3_manifest_reads_only_its_bucket_and_prefix(s3, tmp_path):
    s3.put_object(Bucket="media", Key="cat/in.png", Body=_png_bytes())
    s3.put_object(Bucket="media", Key="cat/sub/deep.png", Body=_png_bytes((1, 2, 3)))
    s3.put_object(Bucket="media", Key="private/secret.png", Body=SECRET.encode())
    s3.put_object(Bucket="other", Key="prefix/theirs.png", Body=_png_bytes((200, 10, 10)))
    s3.put_object(Bucket="other", Key="elsewhere/no.png", Body=_png_bytes((9, 9, 9)))
    body = (
        "image_id,path\nin,in.png\ndeep,sub/deep.png\nup,../private/secret.png\n"
        "sibling,s3://media/private/secret.png\ntheirs,s3://other/prefix/theirs.png\n"
        "no,s3://other/elsewhere/no.png\nlocal,/etc/passwd\n"
    )
    s3.put_object(Bucket="media", Key="cat/m.csv", Body=body.encode())

    _run(_settings(tmp_path), "s3://media/cat/m.csv")
    store = Dataset(str(tmp_path / "ds"))
    assert sorted(store.read_assets()["image_id"]) == ["deep", "in"]
    failures = store.read_failures().set_index("image_id")
    for image_id in ("up", "sibling", "theirs", "no", "local"):
        assert (failures.loc[image_id, "stage"], failures.loc[image_id, "error_type"]) == ("read", "PathNotAllowedError")
    assert "the manifest's prefix s3://media/cat/" in failures.loc["theirs", "message"]
    assert "'..' segment" in failures.loc["up", "message"]
    assert SECRET not in _everything_stored(tmp_path / "ds")

    # An allowed root s3://other/prefix admits that prefix only.
    _run(_settings(tmp_path, allowed_roots=("s3://other/prefix",)), "s3://media/cat/m.csv", run_id="run-2")
    assert sorted(store.read_assets()["image_id"]) == ["deep", "in", "theirs"]
    latest = store.read_failures().set_index("image_id")
    assert latest.loc["no", "error_type"] == "PathNotAllowedError"


def test_an_s3_prefix_source_is_its_own_root(s3):
    s3.put_object(Bucket="media", Key="in/a.png", Body=_png_bytes())
    s3.put_object(Bucket="media", Key="in-other/b.png", Body=_png_bytes())
    roots = roots_for("s3://media/in")
    assert roots == Roots(s3=(("media", "in/"),), described="the catalogue's prefix s3://media/in/")
    assert read_bytes("s3://media/in/a.png", s3_client=s3, roots=roots)[:4] == b"\x89PNG"
    with pytest.raises(PathNotAllowedError):
        read_bytes("s3://media/in-other/b.png", s3_client=s3, roots=roots)


def test_the_s3_byte_limit_uses_content_length(s3):
    data = _png_bytes()
    s3.put_object(Bucket="media", Key="x/a.png", Body=data)
    assert read_bytes("s3://media/x/a.png", s3_client=s3, max_bytes=len(data)) == data

    class Body:
        """The body of a response: counts what is read from it."""

        def __init__(self, inner):
            self.inner, self.read_bytes = inner, 0

        def read(self, n=None):
            chunk = self.inner.read(n)
            self.read_bytes += len(chunk)
            return chunk

        def close(self):
            self.inner.close()

    bodies: list[Body] = []

    class Client:
        def get_object(self, **kwargs):
            response = s3.get_object(**kwargs)
            bodies.append(Body(response["Body"]))
            return {**response, "Body": bodies[-1]}

    with pytest.raises(ImageTooLargeError, match=f"{len(data):,} bytes"):
        read_bytes("s3://media/x/a.png", s3_client=Client(), max_bytes=len(data) - 1)
    assert bodies[-1].read_bytes == 0, "refused from ContentLength, before reading the body"

    class Lying(Client):
        def get_object(self, **kwargs):
            response = super().get_object(**kwargs)
            return {**response, "ContentLength": 10}

    with pytest.raises(ImageTooLargeError):
        read_bytes("s3://media/x/a.png", s3_client=Lying(), max_bytes=100)
    assert bodies[-1].read_bytes == 101, "at most limit+1 bytes read"


def test_a_manifest_larger_than_the_cap_is_refused(tmp_path, monkeypatch):
    from media_enrichment import catalog

    manifest = _manifest(tmp_path, {f"i{n}": f"{n}.png" for n in range(100)})
    monkeypatch.setattr(catalog, "MAX_MANIFEST_BYTES", 500)
    with pytest.raises(CatalogError, match="over the limit of 500 bytes for a manifest"):
        load_catalog(manifest)


# -- the command line: --allow-root reaches the flow's parameters --------------------------------


def test_cli_allow_root_is_sent_to_the_flow_and_to_backfill_runs(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from media_enrichment_prefect.cli import run as cli_run
    from media_enrichment_prefect.cli.app import app
    from media_enrichment_prefect.flows import backfill as backfill_flow

    _png(tmp_path / "a.png")
    manifest = _manifest(tmp_path, {"a": "a.png"})
    sent: dict = {}
    monkeypatch.setattr(cli_run, "prepare_prefect_environment", lambda **_: None)
    monkeypatch.setattr(cli_run, "run_flow_with_progress", lambda **parameters: sent.update(run=parameters) or {})
    monkeypatch.setattr(cli_run, "_print_summary", lambda _: None)
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(
        app, ["run", str(manifest), "--dataset", str(tmp_path / "ds"), "--allow-root", "rel", "--allow-root", "s3://b/p"]
    )
    assert done.exit_code == 0, done.output
    assert sent["run"]["allowed_roots"] == [str(tmp_path / "rel"), "s3://b/p"], "relative roots made absolute"
    done = CliRunner().invoke(app, ["run", str(manifest), "--dataset", str(tmp_path / "ds")])
    assert done.exit_code == 0 and "allowed_roots" not in sent["run"], "not given: the environment decides"

    batched = tmp_path / "batched.csv"
    batched.write_text("image_id,path,batch\na,a.png,b1\n")
    monkeypatch.setattr(backfill_flow, "launch_backfill", lambda **kwargs: sent.update(backfill=kwargs) or [])
    done = CliRunner().invoke(app, ["backfill", str(batched), "-b", "b1", "--allow-root", "/srv/images"])
    assert done.exit_code == 0, done.output
    assert sent["backfill"]["parameters"] == {"allowed_roots": ["/srv/images"]}
