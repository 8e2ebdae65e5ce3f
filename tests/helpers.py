"""Helpers shared by test files (fixtures are in ``conftest.py``)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import settings
from PIL import Image

Size = tuple[int, int]
Colour = tuple[int, int, int]


def write_catalog(
    folder: Path,
    count: int,
    *,
    size: Size | Callable[[int], Size] = (64, 48),
    colour: Callable[[int], Colour] = lambda i: (20 * i % 256, 90, (250 - 20 * i) % 256),
    extra_rows: Iterable[tuple[str, str]] = (),
) -> Path:
    """A catalogue folder: ``count`` plain PNGs ``0.png``, ``1.png``… of ``size`` (or ``size(i)``)
    and ``colour(i)``, and a manifest ``catalog.csv`` (``image_id,path``) listing them as
    ``img0``, ``img1``…, then ``extra_rows`` as they are. The default colours differ up to 64
    images (PIL clips a channel beyond 0-255: distinct colours must stay inside it).

    Returns:
        The manifest's path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        Image.new("RGB", size(i) if callable(size) else size, colour(i)).save(folder / f"{i}.png")
        rows.append((f"img{i}", f"{i}.png"))
    manifest = folder / "catalog.csv"
    with manifest.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["image_id", "path"])
        writer.writerows([*rows, *extra_rows])
    return manifest


def run_cli(*args: str) -> Any:
    """``media-enrich *args`` in this process (typer's ``CliRunner``, 200 columns): the result,
    with ``exit_code`` and ``output``. (conftest's ``cli`` fixture runs it in a subprocess.)"""
    from typer.testing import CliRunner

    from media_enrichment_prefect.cli import app

    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def fuzz_settings(max_examples: int, **options) -> settings:
    """Hypothesis settings for a fuzz test of ``max_examples`` examples (what ``make test`` draws).

    Under the hypothesis profile ``fast`` (``make test-fast``, registered in ``conftest.py``) at
    most that profile's ``max_examples``: a test's own ``max_examples`` beats any profile, so the
    profile reaches the test only through here.
    """
    if settings.get_current_profile_name() == "fast":
        max_examples = min(max_examples, settings.default.max_examples)
    return settings(max_examples=max_examples, **options)


@contextmanager
def batch_bedrock_server(env: Any, plan: Any) -> Iterator[Any]:
    """The Bedrock test server, runtime and control plane (``AWS_ENDPOINT_URL_BEDROCK`` and
    ``_RUNTIME`` set on ``env``, a ``monkeypatch``), its batch jobs at the pace of ``plan`` (a
    ``BatchPlan``) on the S3 of the environment (conftest's ``s3``); idle before it stops."""
    from media_enrichment.testing import BedrockServer

    with BedrockServer(max_lifetime=120, batch_plan=plan) as server:
        env.setenv("AWS_ENDPOINT_URL_BEDROCK", server.endpoint_url)
        env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        yield server
        server.batch.wait_idle(5)
