"""The Prefect UI shows a run of the flow and its artifacts (headless Debian Chromium + Playwright).

Needs /usr/bin/chromium: `make test` installs Debian's package when it is missing (as root).
On failure a screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


from media_enrichment.report import artifact_key

CHROMIUM = os.environ.get("MEDIA_ENRICH_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def _visible(page, text: str, timeout: float = 30_000) -> None:
    """Wait until some visible element shows ``text``."""
    page.get_by_text(text).locator("visible=true").first.wait_for(timeout=timeout)


def test_run_and_artifacts_are_shown_in_the_ui(cli, prefect_server, sample_manifest, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    dataset = str(tmp_path / "ds")
    run = cli("run", str(sample_manifest), "--dataset", dataset, "--limit", "4", cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    run_id = re.search(r"run_id\s+│\s+([0-9a-f-]{36})", run.stdout).group(1)
    ui = prefect_server.removesuffix("/api")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{ui}/runs/flow-run/{run_id}")
            page.get_by_text("Completed").first.wait_for(timeout=60_000)
            _visible(page, "enrich-catalog")
            page.get_by_text("Artifacts", exact=True).locator("visible=true").first.click()
            for kind in ("summary", "failures", "heatmap"):
                _visible(page, artifact_key(kind, dataset))
            page.get_by_text("Logs", exact=True).locator("visible=true").first.click()
            _visible(page, "Enriched 4, reused 0")
        except Exception:
            SCREENSHOTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "ui-flow-run.png"), full_page=True)
            raise
        finally:
            browser.close()
