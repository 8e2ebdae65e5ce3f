"""Dataset commands of the CLI (no Prefect involved)."""

from __future__ import annotations

import re
import shutil

import pytest
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError
from typer.testing import CliRunner

from media_enrichment_prefect.cli import app
from media_enrichment.dataset import Dataset
from media_enrichment.pipeline.staging import assets_table, failures_table
from tests.test_dataset import _failure, _row

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.mark.slow  # a dozen commands, each opening the Delta table, compaction and vacuum (5-6 s)
def test_failures_rollback_compact_vacuum(tmp_path):
    root = str(tmp_path / "ds")
    ds = Dataset(root)
    ds.record_failures(failures_table([_failure("broken")]), resolved_ids=[], metadata={})
    listed = runner.invoke(app, ["failures", "-d", root])
    assert listed.exit_code == 0 and "broken" in listed.output and "ImageError" in listed.output

    ds.merge_assets(assets_table([_row("a", "A")]), metadata={})
    ds.merge_assets(assets_table([_row("b", "B")]), metadata={})
    result = runner.invoke(app, ["rollback", "0", "-d", root])
    assert result.exit_code == 0 and "as version 2" in result.output
    assert list(ds.read_assets()["image_id"]) == ["a"]
    assert re.search(r"│ b\s", runner.invoke(app, ["show", "-d", root, "--version", "1"]).output)
    assert not re.search(r"│ b\s", runner.invoke(app, ["show", "-d", root]).output)

    beyond = runner.invoke(app, ["rollback", "7", "-d", root])
    assert beyond.exit_code == 1 and "the table has versions 0–2" in beyond.output
    current = runner.invoke(app, ["rollback", "2", "-d", root])
    assert current.exit_code == 1 and "already the current version" in current.output
    assert runner.invoke(app, ["compact", "-d", root]).exit_code == 0
    dry = runner.invoke(app, ["vacuum", "-d", root])
    assert dry.exit_code == 0 and "Would delete 0" in dry.output
    refused = runner.invoke(app, ["vacuum", "-d", root, "--retention-hours", "0", "--apply"])
    assert refused.exit_code == 1 and "minimum of 168 hours" in refused.output
    assert list(ds.read_assets()["image_id"]) == ["a"]


def _one_error_line(result) -> str:
    """The output of a refused command: exit 1, one ``error:`` line, no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_reading_commands_refuse_a_path_that_holds_no_dataset(tmp_path):
    typo = str(tmp_path / "dataste")
    for command in (["show"], ["failures"], ["history"], ["export", "--csv", str(tmp_path / "out.csv")]):
        line = _one_error_line(runner.invoke(app, [*command, "-d", typo]))
        assert f"no dataset at {typo}" in line, command
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "dataste").exists()


@pytest.mark.slow  # eleven commands, each opening the Delta table (5 s)
def test_a_version_that_does_not_exist_names_the_versions_there_are(tmp_path):
    root = str(tmp_path / "ds")
    ds = Dataset(root)
    ds.merge_assets(assets_table([_row("a", "A")]), metadata={})
    ds.merge_assets(assets_table([_row("b", "B")]), metadata={})
    for version in ("999", "-1", "2"):
        for command in (["show"], ["export", "--csv", str(tmp_path / "out.csv")], ["search", "red"]):
            line = _one_error_line(runner.invoke(app, [*command, "-d", root, "--version", version]))
            assert line == f"error: no version {version} of the dataset at {root}: the table has versions 0–1", command
    line = _one_error_line(runner.invoke(app, ["rollback", "5", "-d", root]))
    assert line.endswith("the table has versions 0–1")
    assert runner.invoke(app, ["show", "-d", root, "--version", "1"]).exit_code == 0


def test_export_onto_a_folder_or_under_a_file_is_refused(tmp_path, enriched_sample):
    folder = tmp_path / "exports"
    (folder / "keep.txt").parent.mkdir()
    (folder / "keep.txt").write_text("mine")
    for flags in ([], ["--overwrite"]):
        line = _one_error_line(runner.invoke(app, ["export", "--csv", str(folder), "-d", enriched_sample.root, *flags]))
        assert "is a folder" in line
    assert (folder / "keep.txt").read_text() == "mine"
    (tmp_path / "file").write_text("")
    line = _one_error_line(runner.invoke(app, ["export", "--csv", str(tmp_path / "file" / "x.csv"), "-d", enriched_sample.root]))
    assert "is not a folder" in line


def test_vacuum_checks_the_retention_before_delta_rs_does(tmp_path, enriched_sample):
    root = str(tmp_path / "ds")
    shutil.copytree(enriched_sample.root, root)
    line = _one_error_line(runner.invoke(app, ["vacuum", "-d", root, "--retention-hours", "167"]))
    assert "under this table's minimum of 168 hours" in line
    line = _one_error_line(runner.invoke(app, ["vacuum", "-d", root, "--retention-hours", str(2**63)]))
    assert "over the maximum" in line
    assert runner.invoke(app, ["vacuum", "-d", root, "--retention-hours", "168"]).exit_code == 0
    # A table's own minimum (its delta.deletedFileRetentionDuration) is the one checked.
    DeltaTable(f"{root}/assets").alter.set_table_properties({"delta.deletedFileRetentionDuration": "interval 2 days"})
    line = _one_error_line(runner.invoke(app, ["vacuum", "-d", root, "--retention-hours", "47"]))
    assert "minimum of 48 hours" in line and "interval 2 days" in line
    assert runner.invoke(app, ["vacuum", "-d", root, "--retention-hours", "48"]).exit_code == 0


def test_verbose_adds_the_traceback_to_a_user_error_and_bugs_keep_theirs(tmp_path):
    missing = str(tmp_path / "missing")
    for args in (["show", "-d", missing, "-v"], ["-v", "show", "-d", missing], ["history", "--verbose", "-d", missing]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, args
        assert "Traceback (most recent call last)" in result.output and "DatasetError" in result.output, args
        assert result.output.rstrip().endswith(f"error: no dataset at {missing} yet: run an enrichment first")
    # A table whose log is damaged is not a user's mistake: the exception propagates.
    root = tmp_path / "ds"
    Dataset(root).merge_assets(assets_table([_row("a", "A")]), metadata={})
    next((root / "assets" / "_delta_log").glob("*.json")).write_text("{not json")
    result = runner.invoke(app, ["show", "-d", str(root)])
    assert isinstance(result.exception, DeltaError), result.output
