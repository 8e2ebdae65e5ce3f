"""The command line as a user runs it: real subprocesses, against the session's Prefect server
(``cli``); the start-up budget test starts Prefect's own temporary server on a fresh home."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from media_enrichment.schema import ASSETS_SCHEMA


def test_demo_then_show_history_export(cli, tmp_path):
    demo = cli("demo", cwd=tmp_path)
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

    history = cli("history", cwd=tmp_path)
    assert history.returncode == 0 and "WRITE" in history.stdout and "local/" in history.stdout

    show = cli("show", "--limit", "3", "--version", "0", cwd=tmp_path)
    assert show.returncode == 0 and "abstract-01" in show.stdout

    export = cli("export", "--csv", "out/export.csv", cwd=tmp_path)
    assert export.returncode == 0, export.stdout + export.stderr
    exported = pd.read_csv(tmp_path / "out" / "export.csv")
    assert list(exported.columns) == [
        "image_id", "path", "title", "description", "keywords", "tags", "ocr_texts", "embeddings",
    ]
    assert len(exported) == len(frame)
    again = cli("export", "--csv", "out/export.csv", cwd=tmp_path)
    assert again.returncode == 1 and "--overwrite" in again.stdout


def test_malformed_manifest_fails_fast_with_a_clear_message(cli, tmp_path):
    (tmp_path / "m.csv").write_text("image_id,file\na,a.png\n")
    result = cli("run", "m.csv", cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "lacks column(s) path" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "data").exists()


_PREFECT_VARIABLES = (
    "PREFECT_HOME", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "PREFECT_SERVER_ANALYTICS_ENABLED",
    "DO_NOT_TRACK", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "PREFECT_LOGGING_LOG_PRINTS",
)


def test_prefect_gets_a_startup_budget_unless_the_user_set_one(monkeypatch, tmp_path):
    from prefect.settings import Settings

    from media_enrichment_prefect.cli import EPHEMERAL_STARTUP_TIMEOUT_S, prepare_prefect_environment

    monkeypatch.chdir(tmp_path)
    for name in _PREFECT_VARIABLES:  # set then unset: the test's end restores what was there
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    prepare_prefect_environment()
    assert EPHEMERAL_STARTUP_TIMEOUT_S >= 120  # the first start on a fresh home took 21.8 s on 2 cores
    # The variable is Prefect's own (3.9): its settings read the budget the CLI set.
    assert Settings().server.ephemeral.startup_timeout_seconds == EPHEMERAL_STARTUP_TIMEOUT_S
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "45")
    prepare_prefect_environment()
    assert Settings().server.ephemeral.startup_timeout_seconds == 45


@pytest.mark.slow  # starts the CLI, and Prefect's temporary server on a fresh home
def test_a_prefect_server_that_does_not_come_up_in_time_is_one_line_saying_what_to_do(tmp_path):
    # No PREFECT_API_URL (no PREFECT_* at all): the CLI starts Prefect's temporary server. The
    # user's budget is kept, and 0 s is too short for any server to answer.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(COLUMNS="200", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0")
    result = subprocess.run(
        [sys.executable, "-m", "media_enrichment_prefect.cli", "demo"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert "within 0 s" in errors[0]
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in errors[0] and "PREFECT_API_URL" in errors[0]


def test_history_fits_80_columns_and_each_part_shows_its_own_count(cli, prefect_harness, sample_manifest, tmp_path, monkeypatch):
    from media_enrichment_prefect.flows.enrich import enrich_catalog
    from media_enrichment.dataset import Dataset

    monkeypatch.setenv("MEDIA_ENRICH_COMMIT_ROWS", "4")
    root = str(tmp_path / "ds")
    summary = enrich_catalog(source=str(sample_manifest), dataset=root, chunk_size=2, limit=10, embedding_dim=256)
    assert summary["enriched"] == 10 and summary["assets_version"] == 2
    parts = {h["part"]: h for h in Dataset(root).history()}
    assert {p: int(h["part_enriched"]) for p, h in parts.items()} == {"1/3": 4, "2/3": 4, "3/3": 2}
    assert {int(h["enriched"]) for h in parts.values()} == {10}, "each part still carries the run's count"

    result = cli("history", "-d", root, cwd=tmp_path, timeout=120, COLUMNS="80")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    rows = {
        m.group("part"): int(m.group("enriched"))
        for m in (re.search(r"WRITE\s+(?P<enriched>\d+)\s+(?P<part>\d/3)\s+\S", line) for line in lines)
        if m
    }
    assert rows == {"1/3": 4, "2/3": 4, "3/3": 2}, result.stdout
    run_line = " ".join(result.stdout.split("versions 0–2:")[1].split())
    assert run_line.startswith("10 enriched, 0 failed, 0 reused;") and "local/" in run_line, result.stdout


def test_prefect_reports_of_a_user_error_stay_off_the_terminal():
    from media_enrichment_prefect.cli import _UserErrorsOffTerminal
    from media_enrichment.errors import CatalogError

    def record(level: int, msg: str, error: BaseException | None = None) -> logging.LogRecord:
        exc_info = (type(error), error, None) if error else None
        return logging.LogRecord("prefect.task_runs", level, __file__, 1, msg, None, exc_info)

    keep = _UserErrorsOffTerminal().filter
    assert not keep(record(logging.ERROR, "Task run failed with exception", CatalogError("no such bucket")))
    assert not keep(record(logging.ERROR, "Finished in state Failed('Task run encountered an exception CatalogError: x')"))
    # A bug is still reported, and so is anything else at the terminal's level.
    assert keep(record(logging.ERROR, "Task run failed with exception", KeyError("x")))
    assert keep(record(logging.ERROR, "Finished in state Failed('Task run encountered an exception KeyError: x')"))
    assert keep(record(logging.WARNING, "model is LEGACY"))
