"""The staging area: each finished chunk as one Parquet file, until its rows are committed.

A staged file, ``<dataset>/_staging/<key>/<writer>.parquet``, holds the chunk's assets rows; its
footer holds the chunk's failure rows and counts, so an entry is whole or absent. A folder (an
S3 prefix) per key: looking a chunk up lists that key's files only, one small listing (one
``ListObjectsV2`` on S3) whatever the number of chunks staged. The key
(``chunk_key``) covers the chunk's images' content hashes and the models: an entry whoever
wrote it (a retry, a run that died before its commit, a run going on at the same time) is
reused without calling any model. Writers never share a name, so concurrent runs never
replace each other's files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from media_enrichment import storage
from media_enrichment.pipeline.execution import ChunkResult
from media_enrichment.pipeline.plan import ModelVersions, WorkItem
from media_enrichment.schema import ASSETS_SCHEMA, FAILURES_SCHEMA

if TYPE_CHECKING:
    from media_enrichment.dataset import Dataset


def chunk_key(items: Sequence[WorkItem], versions: ModelVersions) -> str:
    """A name for a chunk's staged results: changes with its images, the content hashes the plan
    knows of them (an image the plan did not read has none) and the models."""
    h = hashlib.sha256(json.dumps(versions.as_metadata(), sort_keys=True).encode())
    for item in items:
        h.update(f"\n{item.image_id}\t{item.content_sha256}".encode())
    return h.hexdigest()[:24]


def assets_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Assets rows (dicts) as a table of the assets schema.

    Vectors (float32 arrays, or lists) go into Arrow as one buffer, not as Python floats:
    ``from_pylist`` would box every float of every vector."""
    field = ASSETS_SCHEMA.field("embedding")
    others = pa.schema([f for f in ASSETS_SCHEMA if f.name != "embedding"])
    table = pa.Table.from_pylist([{k: v for k, v in row.items() if k != "embedding"} for row in rows], schema=others)
    vectors = [np.asarray(row["embedding"], dtype=np.float32) for row in rows]
    offsets = np.zeros(len(vectors) + 1, dtype=np.int32)
    np.cumsum([v.size for v in vectors], out=offsets[1:])
    values = np.concatenate(vectors) if vectors else np.zeros(0, dtype=np.float32)
    column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.float32()), type=field.type)
    return table.add_column(ASSETS_SCHEMA.get_field_index("embedding"), field, column)


def failures_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Failure rows (``failure_row``) as a table of the failures schema."""
    return pa.Table.from_pylist(list(rows), schema=FAILURES_SCHEMA)


#: A staged file's footer (Parquet key-value metadata) says what it holds: ``_STAGED_INFO``,
#: JSON with the chunk's key, its writer and its counts, and ``_STAGED_FAILURES``, the chunk's
#: failure rows (an Arrow IPC stream, base64). One file per entry, so an entry is whole or absent.
_STAGED_INFO = b"media_enrichment.staged"
_STAGED_FAILURES = b"media_enrichment.failures"
_STAGED_FORMAT = 1
_STAGED_SUFFIX = ".parquet"
#: Columns a staged file dictionary-encodes: all but the vectors, whose floats never repeat
#: (trying costs ~40 % of writing a chunk's file, for nothing).
_DICTIONARY_COLUMNS = [f.name for f in ASSETS_SCHEMA if f.name != "embedding"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedChunk:
    """A finished chunk waiting for the merge: one Parquet file, ``assets_path``, whose rows are
    the chunk's assets rows and whose footer holds its failure rows and counts."""

    key: str
    assets_path: str
    enriched: int
    failed: int
    input_tokens: int
    output_tokens: int
    writer: str = ""  # who staged it: the run id and a random suffix, unique per write
    worker: str = ""  # host:pid of the process that ran the chunk task, when known


def key_folder(staging_dir: str | Path, key: str) -> str:
    """The folder (or ``s3://`` prefix) of one chunk key's staged files: ``<staging_dir>/<key>``."""
    return storage.join(staging_dir, key)


def staged_path(staging_dir: str | Path, key: str, writer: str) -> str:
    """Where one writer stages a chunk: ``<staging_dir>/<key>/<writer>.parquet``. Writers never
    share a name, so no write replaces another's."""
    return storage.join(key_folder(staging_dir, key), f"{writer}{_STAGED_SUFFIX}")


def _writer_id(run_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9-]", "-", run_id)[:40]
    token = secrets.token_hex(4)
    return f"{safe}-{token}" if safe else token


def _encode_failures(failures: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, FAILURES_SCHEMA) as writer:
        writer.write_table(failures)
    return base64.b64encode(sink.getvalue().to_pybytes())


def stage_chunk(
    result: ChunkResult,
    *,
    staging_dir: str | Path,
    key: str,
    run_id: str = "",
    storage_options: storage.Options = None,
) -> StagedChunk:
    """Stage a chunk's rows and failures as one Parquet file, which appears whole or not at all.

    Args:
        result: the chunk's rows and failure rows.
        staging_dir: the dataset's staging area (``Dataset.staging_dir``).
        key: the chunk's key (``chunk_key``).
        run_id: names the writer in the file's name, with a random suffix: two runs, or two
            attempts, staging the same chunk write two files, and neither replaces the other.
        storage_options: S3 credentials when they do not come from the environment
            (``aws.storage_options``).

    Returns:
        The staged chunk.
    """
    writer = _writer_id(run_id)
    path = staged_path(staging_dir, key, writer)
    failures = failures_table(result.failures)
    info = {
        "format": _STAGED_FORMAT, "key": key, "writer": writer, "enriched": len(result.rows),
        "failed": failures.num_rows, "input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
    }
    table = assets_table(result.rows)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), _STAGED_INFO: json.dumps(info).encode(), _STAGED_FAILURES: _encode_failures(failures)}
    )
    storage.write_parquet(table, path, options=storage_options, use_dictionary=_DICTIONARY_COLUMNS)
    return StagedChunk(
        key=key, assets_path=path, enriched=info["enriched"], failed=info["failed"],
        input_tokens=info["input_tokens"], output_tokens=info["output_tokens"], writer=writer,
    )


class _NotAnEntry(ValueError):
    """A file in the staging area that is not a complete staged chunk."""


def _read_entry(path: str, *, key: str | None, storage_options: storage.Options) -> tuple[StagedChunk, pa.Table]:
    """A staged file's chunk and failure rows.

    Raises:
        FileNotFoundError: the file is gone (committed and removed by a run meanwhile).
        ValueError: the file is not a complete staged chunk (cut short, from an older layout,
            or its footer disagrees with its rows).
    """
    with storage.parquet_file(path, options=storage_options) as file:  # ArrowInvalid (a ValueError) if cut short
        footer = file.schema_arrow.metadata or {}
        rows = file.metadata.num_rows
    if _STAGED_INFO not in footer or _STAGED_FAILURES not in footer:
        raise _NotAnEntry("no staging footer (an older layout, or not written by this pipeline)")
    info = json.loads(footer[_STAGED_INFO])
    failures = pa.ipc.open_stream(base64.b64decode(footer[_STAGED_FAILURES], validate=True)).read_all()
    if info.get("format") != _STAGED_FORMAT or (key is not None and info.get("key") != key):
        raise _NotAnEntry(f"format {info.get('format')!r}, key {info.get('key')!r}")
    if info.get("enriched") != rows or info.get("failed") != failures.num_rows:
        raise _NotAnEntry(f"footer says {info.get('enriched')} rows and {info.get('failed')} failures, file holds {rows} and {failures.num_rows}")
    chunk = StagedChunk(
        key=info["key"], assets_path=path, enriched=rows, failed=failures.num_rows,
        input_tokens=int(info["input_tokens"]), output_tokens=int(info["output_tokens"]), writer=str(info["writer"]),
    )
    return chunk, failures.cast(FAILURES_SCHEMA)


def find_staged(*, staging_dir: str | Path, key: str, storage_options: storage.Options = None) -> StagedChunk | None:
    """A complete staged entry of this chunk, whoever wrote it: an earlier attempt, a run that
    died before its commit, or a run going on at the same time (its rows are the same: the key
    covers the images' content and the models).

    A file that vanishes while it is read was committed by the run that removed it, and is
    passed over. A file that is not a complete entry (cut short, or of an older layout) is
    ignored and deleted: files are written under a temporary name, or uploaded whole, so one
    under its final name is never still being written.

    Returns:
        The first complete entry by name, or None: the chunk must be enriched.
    """
    for path in storage.list_files(key_folder(staging_dir, key), suffix=_STAGED_SUFFIX, options=storage_options):
        try:
            return _read_entry(path, key=key, storage_options=storage_options)[0]
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("Ignoring and deleting %s, not a complete staged chunk: %s", path, exc)
            storage.delete(path, options=storage_options)
    return None


def staged_failures(chunks: Sequence[StagedChunk], *, storage_options: storage.Options = None) -> pa.Table:
    """The failure rows of staged chunks, as one table (small: read from the files' footers).
    A chunk whose file is gone was committed, failures included, by the run that removed it."""
    tables = []
    for chunk in chunks:
        try:
            tables.append(_read_entry(chunk.assets_path, key=None, storage_options=storage_options)[1])
        except FileNotFoundError:
            continue
    return pa.concat_tables(tables) if tables else FAILURES_SCHEMA.empty_table()


def staged_image_ids(chunks: Sequence[StagedChunk], *, storage_options: storage.Options = None) -> list[str]:
    """The ids of the images enriched in staged chunks (reads one column only); a chunk whose
    file is gone (committed by the run that removed it) is left out."""
    ids: list[str] = []
    for chunk in chunks:
        try:
            ids += storage.read_parquet(chunk.assets_path, columns=["image_id"], options=storage_options).column(0).to_pylist()
        except FileNotFoundError:
            continue
    return ids


def commit_staged(dataset: Dataset, chunks: Sequence[StagedChunk], *, metadata: dict[str, Any]) -> int | None:
    """Upsert the rows of staged chunks into the assets table in one commit.

    Another run may commit a chunk it shares with this one (same key) and remove its file
    meanwhile; its rows are then in the table already. So a commit that fails while one of
    its files has vanished is made again without it (a failed write commits nothing).

    Returns:
        The new table version, or None when no rows were left to commit.
    """
    options = dataset.storage_options
    pending = list(chunks)
    while True:
        try:
            return dataset.merge_assets_from_parquet([c.assets_path for c in pending], metadata=metadata)
        except Exception:
            left = [c for c in pending if storage.exists(c.assets_path, options=options)]
            if len(left) == len(pending):
                raise
            logger.info("%d staged file(s) were committed by another run meanwhile", len(pending) - len(left))
            pending = left


def remove_staged(chunks: Sequence[StagedChunk], *, storage_options: storage.Options = None) -> None:
    """Delete the staged files of committed chunks (this run's, or those it committed), and a
    local key folder left empty; a file already gone, or a folder another writer still uses, is
    fine."""
    for chunk in chunks:
        storage.delete(chunk.assets_path, options=storage_options)
        storage.remove_empty_parent(chunk.assets_path)
