"""Shared fixtures. Prefect runs against one temporary server for the whole session, started
only for the first test that asks for it (``make test-fast`` starts none)."""

from __future__ import annotations

import os

# Before Prefect is imported anywhere: no telemetry, quiet logs.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hypothesis import settings as _hypothesis_settings  # noqa: E402 - its pytest plugin imports it anyway

#: ``make test-fast`` (``--hypothesis-profile=fast``): each fuzz test draws at most this many
#: examples (``tests.helpers.fuzz_settings``); ``make test`` draws each test's own number.
_hypothesis_settings.register_profile("fast", max_examples=10)

#: Fixtures that make a test ``slow`` (seconds each): a Prefect server or run, other processes, the
#: sample catalogue (generated, then enriched), moto's S3 server, and the test files' own fixtures
#: that start the loopback Bedrock test server (``bedrock``, ``server``).
_SLOW_FIXTURES = {
    "prefect_harness", "prefect_server", "cli", "enriched_sample", "sample_index", "sample_manifest", "s3",
    "bedrock", "server",
}

#: Test files all of whose tests are ``slow``, marked here because the file is not edited for it:
#: the test server's own tests each start it (or a process) and call it through botocore.
_SLOW_FILES = {"test_bedrock_server.py"}


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` every test that uses one of ``_SLOW_FIXTURES`` or is in one of ``_SLOW_FILES``
    (``make test-fast`` runs the rest: the library's own logic in-process, no server, no process,
    no OCR, no run through the driver). Other slow tests carry ``@pytest.mark.slow`` themselves,
    with the reason."""
    for item in items:
        if _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name in _SLOW_FILES:
            item.add_marker(pytest.mark.slow)


#: Where the autouse fixture points boto3's configuration files: nowhere (no such file).
_NO_AWS_FILE = "/nonexistent/media-enrichment-tests/aws"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch):
    """No test reads the developer's own ``MEDIA_ENRICH_*`` or ``AWS_*`` variables, nor their AWS
    config and credentials files, nor an instance's metadata service; a test that needs one sets it
    (``aws_env``: fake credentials and a region)."""
    for name in list(os.environ):
        if name.startswith(("MEDIA_ENRICH_", "AWS_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", _NO_AWS_FILE + "-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", _NO_AWS_FILE + "-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Fake credentials, a fixed region, and AWS config files of the test's own (``tmp_path``:
    absent until the test writes them). The autouse fixture has cleared the rest."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    return monkeypatch


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """A temporary Prefect server and database for every flow test of the session."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def sample_manifest(tmp_path_factory) -> Path:
    """The project's generated sample catalogue (generated once per session, read-only)."""
    from media_enrichment.sample import generate_sample_catalog

    return generate_sample_catalog(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="session")
def enriched_sample(prefect_harness, sample_manifest, tmp_path_factory):
    """The sample catalogue enriched once per session (local provider, 256 dims); read-only."""
    from media_enrichment_prefect.flows.enrich import enrich_catalog
    from media_enrichment.dataset import Dataset

    root = tmp_path_factory.mktemp("enriched-sample") / "ds"
    summary = enrich_catalog(source=str(sample_manifest), dataset=str(root), chunk_size=16, embedding_dim=256)
    assert summary["failed"] == 0
    return Dataset(root)


@pytest.fixture(scope="session")
def sample_index(enriched_sample):
    """The vector index of the enriched sample dataset."""
    from media_enrichment.search import VectorIndex

    return VectorIndex.from_dataset(enriched_sample)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real `prefect server start` on loopback, for tests that need its API or UI.

    Yields the API URL; the server is stopped (its whole process group) at the end of the session.
    """
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    home = tmp_path_factory.mktemp("prefect-server-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home), PREFECT_UI_API_URL=api, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
        PREFECT_API_URL=api,
    )
    log = open(home / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise RuntimeError(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    try:
        yield api
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def cli(prefect_server):
    """Runs ``media-enrich`` (``python -m media_enrichment_prefect.cli``) in a subprocess against
    the session's Prefect server, so no run migrates a temporary server's fresh database.

    ``cli(*args, cwd, timeout=600, **env)``: the environment is the test's at call time without
    any ``PREFECT_*`` variable (the autouse fixture cleared the developer's ``MEDIA_ENRICH_*``, so
    those present were set by the test), plus ``PREFECT_API_URL``, ``COLUMNS=200`` and ``env``.
    """
    import subprocess
    import sys

    def run(*args: str, cwd, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
        full = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        full.update(PREFECT_API_URL=prefect_server, COLUMNS="200")
        full.update(env)  # the test's overrides win, COLUMNS too
        return subprocess.run(
            [sys.executable, "-m", "media_enrichment_prefect.cli", *args],
            cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout,
        )

    return run


@pytest.fixture
def s3(aws_env):
    """moto's S3 server on loopback, emptied, with a bucket ``media`` (create others as needed):
    boto3 and pyarrow (``AWS_ENDPOINT_URL_S3``) and delta-rs (``AWS_ENDPOINT_URL``, plain HTTP,
    renames without a lock) pointed at it. Yields a boto3 S3 client."""
    import urllib.request

    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).close()
    for key, value in {
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": url, "AWS_ENDPOINT_URL": url, "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }.items():
        aws_env.setenv(key, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket="media")
    yield client
    server.stop()
