"""Dataset commands of the CLI (no Prefect involved)."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from media_enrichment.cli import app
from media_enrichment.dataset import Dataset
from media_enrichment.pipeline import assets_table, failures_table
from tests.test_dataset import _failure, _row

runner = CliRunner(env={"COLUMNS": "200"})


def test_failures_rollback_compact_vacuum(tmp_path):
    root = str(tmp_path / "ds")
    ds = Dataset(root)
    assert "No failures" in runner.invoke(app, ["failures", "-d", root]).output
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

    assert runner.invoke(app, ["rollback", "7", "-d", root]).exit_code == 1
    assert runner.invoke(app, ["compact", "-d", root]).exit_code == 0
    dry = runner.invoke(app, ["vacuum", "-d", root])
    assert dry.exit_code == 0 and "Would delete 0" in dry.output
    refused = runner.invoke(app, ["vacuum", "-d", root, "--retention-hours", "0", "--apply"])
    assert refused.exit_code == 1 and "retention" in refused.output.lower()
    assert list(ds.read_assets()["image_id"]) == ["a"]
