"""Batch inference as a way of executing a plan's calls: jobs in, rows and failure rows out.

``BatchExecution.run(items)`` takes the plan's items the driver chose for batch inference and
hands back staged chunks, exactly as chunk tasks do, so commit, failures and the summary are the
same code as on demand:

1. The items are cut into chunks (``chunk_size``, the plan's order) keyed by ``chunk_key``; a
   chunk already staged (by a run that died before its commit) is reused, and its images need
   no job at all.
2. Every record id is computed from the item alone (``records.record_id``: no image is read for
   it). Jobs recorded in the staging area (``<staging>/batch/<key>.json``, a ``BatchRun``) that
   hold some of these records are followed instead of submitting them again.
3. The other records are built from the same request bodies as on demand (the image read and
   prepared once, for both models), in bounded groups: at most one job's quota of records
   (``batch_max_records_per_job``, ``batch_max_bytes_per_job``) is held at once; each group is
   split into jobs (``split_jobs``), submitted, and the run's ``BatchRun`` rewritten before the
   next group is built, and before any waiting. A model whose records are fewer than
   ``batch_min_records`` gets no job: those calls are made on demand.
4. The jobs are followed (``on_progress``: records processed of total); the results of each job
   are read as it ends. A chunk whose images all have their answers is turned into rows with
   ``execution.asset_row`` (the on-demand row builder) and staged at once.
5. Records that came back with an ``error``, an ``invalid`` answer or ``missing``, and every
   record of a ``Failed`` or ``Expired`` job, go on demand (``batch_fallback=on-demand``: the
   describer's own corrective turns; a description already obtained from the job is kept when
   only the vector is missing), or become failure rows (``fail``). Nothing is dropped.

With ``wait=False`` the jobs are submitted and recorded, and nothing is waited for: a later run
(or ``media-enrich collect``) follows them.

One step to a module:

* ``context``: ``BatchContext`` (the run's settings, services, clients, location and quotas;
  ``batchable_kinds``: the calls a job can make) and ``BatchImage``, what is known of each item;
* ``execution``: ``BatchExecution.run``, the steps in order;
* ``recorded``: the ``BatchRun`` records of the staging area (2; ``recorded_runs``,
  ``remove_records``);
* ``submitting``: records built, split and submitted a bounded group at a time (3);
* ``following``: the jobs followed and their results taken in (4);
* ``rows``: answers into rows, rows into staged chunks (4);
* ``fallback``: what the jobs left, on demand or as failure rows (5);
* ``outcome``: ``BatchProgress``, ``BatchOutcome`` and ``record_summary``.
"""

from media_enrichment.pipeline.batch.context import BatchContext, BatchImage, batch_clients, batchable_kinds, quotas_of
from media_enrichment.pipeline.batch.execution import BatchExecution
from media_enrichment.pipeline.batch.fallback import BatchRecordError
from media_enrichment.pipeline.batch.outcome import BatchOutcome, BatchProgress, record_summary
from media_enrichment.pipeline.batch.recorded import RECORDS_FOLDER, recorded_runs, records_folder, remove_records

__all__ = [
    "RECORDS_FOLDER",
    "BatchContext",
    "BatchExecution",
    "BatchImage",
    "BatchOutcome",
    "BatchProgress",
    "BatchRecordError",
    "batch_clients",
    "batchable_kinds",
    "quotas_of",
    "record_summary",
    "recorded_runs",
    "records_folder",
    "remove_records",
]
