"""The command line as a user runs it: real subprocesses, a fresh Prefect home."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable

from media_enrichment.schema import ASSETS_SCHEMA


def _cli(*args: str, cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "media_enrichment.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_demo_then_show_history_export(tmp_path):
    demo = _cli("demo", cwd=tmp_path)
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output
    assert "enriched" in demo.stdout and "assets_version" in demo.stdout
    for noise in ("Traceback", "ERROR", "Error", "CancelledError"):
        assert noise not in output, f"{noise!r} in a clean run's output:\n{output}"
    assert (tmp_path / ".prefect").is_dir(), "Prefect's state lives in the project's folder"

    table = DeltaTable(str(tmp_path / "data" / "dataset" / "assets"))
    assert table.version() == 0
    frame = table.to_pandas()
    assert len(frame) == len(pd.read_csv(tmp_path / "data" / "sample" / "catalog.csv"))
    schema = table.to_pyarrow_table().schema
    assert schema.names == ASSETS_SCHEMA.names
    assert schema.field("keywords").type.value_type == pa.string()
    posters = frame[frame["image_id"].str.startswith("poster")]
    assert any("SUMMER" in " ".join(texts) for texts in posters["ocr_texts"])

    history = _cli("history", cwd=tmp_path)
    assert history.returncode == 0 and "WRITE" in history.stdout and "local/" in history.stdout

    show = _cli("show", "--limit", "3", "--version", "0", cwd=tmp_path)
    assert show.returncode == 0 and "abstract-01" in show.stdout

    export = _cli("export", "--csv", "out/export.csv", cwd=tmp_path)
    assert export.returncode == 0, export.stdout + export.stderr
    exported = pd.read_csv(tmp_path / "out" / "export.csv")
    assert list(exported.columns) == [
        "image_id", "path", "title", "description", "keywords", "tags", "ocr_texts", "embeddings",
    ]
    assert len(exported) == len(frame)
    again = _cli("export", "--csv", "out/export.csv", cwd=tmp_path)
    assert again.returncode == 1 and "--overwrite" in again.stdout


def test_malformed_manifest_fails_fast_with_a_clear_message(tmp_path):
    (tmp_path / "m.csv").write_text("image_id,file\na,a.png\n")
    result = _cli("run", "m.csv", cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "lacks column(s) path" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "data").exists()
