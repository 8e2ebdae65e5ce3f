"""A batch job's files on S3, as the test server reads and writes them.

``JobFiles`` holds the S3 client batch jobs read and write with (the server's, or one built on
first use from the server process's environment, e.g. ``AWS_ENDPOINT_URL_S3``). At validation
``read_input`` reads the ``.jsonl`` files under a job's input URI (a file or a prefix) and checks
them as the service does: a JSON object with a ``modelInput`` object per line (a record without
``recordId`` gets an 11-character one, as the service gives it), and the quotas of the job's
``BatchPlan`` (records and bytes per file and per job, the minimum records when
``refuse_small_at="validation"``); a failed check is an ``InvalidInput`` (the job fails with its
message). The output is written where Bedrock writes it: ``<output URI>/<job id>/<input file
path relative to the input URI>.out`` per input file (``write_output``) and
``<output URI>/<job id>/manifest.json.out`` with the record and token counts (``write_manifest``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from media_enrichment.testing.batch.job import BatchJob
from media_enrichment.testing.batch.plan import BELOW_MINIMUM_MESSAGE

__all__ = ["InputFile", "InvalidInput", "JobFiles"]

#: One input file of a job: ``(bucket, key, its records)``.
InputFile = tuple[str, str, list[dict[str, Any]]]

_RECORD_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class InvalidInput(Exception):
    """A job's input the service would refuse at validation (the message is the job's)."""


class JobFiles:
    """The S3 side of a server's batch jobs.

    Args:
        client: the S3 client (None: one is built from the environment on first use).
        lock: the jobs' lock (the client is built under it; a job's ``output_keys`` change under it).
    """

    def __init__(self, client: Any, lock: threading.RLock):
        self._client = client
        self._lock = lock

    @property
    def client(self) -> Any:
        """The S3 client jobs read and write with (built on first use from the environment)."""
        with self._lock:
            if self._client is None:
                import boto3

                self._client = boto3.session.Session().client("s3")
            return self._client

    def input_objects(self, uri: str) -> list[tuple[str, str, int]]:
        """``(bucket, key, size)`` of the ``.jsonl`` files the input URI names (a file or a prefix)."""
        bucket, prefix = _split(uri)
        if prefix.endswith(".jsonl"):
            head = self.client.head_object(Bucket=bucket, Key=prefix)
            return [(bucket, prefix, int(head["ContentLength"]))]
        listed = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(".jsonl"):
                    listed.append((bucket, obj["Key"], int(obj["Size"])))
        return sorted(listed)

    def count_records(self, uri: str) -> int:
        """The records (non-blank lines) of the input files under ``uri``; 0 when they cannot be listed."""
        try:
            objects = self.input_objects(uri)
        except (BotoCoreError, ClientError):
            return 0
        return sum(1 for bucket, key, _ in objects for _ in self._lines(bucket, key))

    def read_input(self, job: BatchJob) -> list[InputFile]:
        """Read and check the job's input (its plan's quotas).

        Raises:
            InvalidInput: the service would fail the job at validation (no input, a malformed
                line, a quota exceeded).
        """
        plan = job.plan
        try:
            objects = self.input_objects(job.input_uri)
        except (BotoCoreError, ClientError) as exc:  # no such bucket, access denied
            raise InvalidInput(f"Unable to access the input data at {job.input_uri}: {exc}") from None
        if not objects:
            raise InvalidInput(f"No .jsonl files were found at {job.input_uri}.")
        files = []
        total = total_bytes = 0
        for bucket, key, size in objects:
            if size > plan.max_file_bytes:
                raise InvalidInput(f"The input file {key} is {size} bytes, more than the quota of {plan.max_file_bytes} bytes per file.")
            records = []
            for number, line in self._lines(bucket, key):
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if not isinstance(record, dict) or not isinstance(record.get("modelInput"), dict):
                    raise InvalidInput(f"Line {number} of {key} is not a JSON object with a modelInput object.")
                if record.get("recordId") is None:  # the service adds one
                    record["recordId"] = _service_record_id(key, number)
                records.append(record)
            if len(records) > plan.max_records_per_file:
                raise InvalidInput(f"The input file {key} has {len(records)} records, more than the quota of {plan.max_records_per_file} records per file.")
            total += len(records)
            total_bytes += size
            files.append((bucket, key, records))
        if total > plan.max_records_per_job:
            raise InvalidInput(f"The job has {total} records, more than the quota of {plan.max_records_per_job} records per job.")
        if total_bytes > plan.max_job_bytes:
            raise InvalidInput(f"The job's input is {total_bytes} bytes, more than the quota of {plan.max_job_bytes} bytes per job.")
        if plan.refuse_small_at == "validation" and total < plan.min_records:
            raise InvalidInput(BELOW_MINIMUM_MESSAGE.format(count=total, minimum=plan.min_records, model_id=job.model_id))
        return files

    def write_output(self, job: BatchJob, key: str, lines: list[str]) -> None:
        """Write the output file of the input file ``key`` (added to the job's ``output_keys``)."""
        bucket, base = _output_folder(job)
        _, in_prefix = _split(job.input_uri)
        relative = key[len(in_prefix) :].lstrip("/") if in_prefix and key.startswith(in_prefix) else key.rsplit("/", 1)[-1]
        out_key = f"{base}/{relative}.out"
        self.client.put_object(Bucket=bucket, Key=out_key, Body="".join(line + "\n" for line in lines).encode("utf-8"))
        with self._lock:
            job.output_keys.append(out_key)

    def write_manifest(self, job: BatchJob, total: int) -> None:
        """Write the job's ``manifest.json.out``: its record and token counts."""
        bucket, base = _output_folder(job)
        manifest = {
            "totalRecordCount": total,
            "processedRecordCount": job.processed,
            "successRecordCount": job.success,
            "errorRecordCount": job.errors,
            "inputTokenCount": job.input_tokens,
            "outputTokenCount": job.output_tokens,
        }
        self.client.put_object(Bucket=bucket, Key=f"{base}/manifest.json.out", Body=json.dumps(manifest).encode("utf-8"))

    def _lines(self, bucket: str, key: str) -> Iterator[tuple[int, bytes]]:
        """``(line number, line)`` of the non-blank lines of an object."""
        data = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        for number, line in enumerate(data.splitlines(), 1):
            if line.strip():
                yield number, line


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key.rstrip("/")


def _output_folder(job: BatchJob) -> tuple[str, str]:
    """The bucket and key of the folder Bedrock writes a job's output to: ``<output URI>/<job id>``."""
    bucket, prefix = _split(job.output_uri)
    return bucket, f"{prefix}/{job.job_id}" if prefix else job.job_id


def _service_record_id(key: str, number: int) -> str:
    """The 11-character id the service gives a record that has none."""
    digest = hashlib.sha256(f"{key}:{number}".encode()).digest()
    value = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(11):
        value, rest = divmod(value, len(_RECORD_ID_CHARS))
        chars.append(_RECORD_ID_CHARS[rest])
    return "".join(chars)
