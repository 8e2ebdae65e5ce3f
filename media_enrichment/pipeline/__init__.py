"""What happens to images between the catalogue and the dataset, without orchestration.

One concern per module:

    driver.py     what a run does, in order: ``open_run`` -> plan -> run_chunk -> commit -> summary
    chunks.py     a chunk's work in whichever process runs it: the picklable ``ChunkJob``, the
                  per-process services cache, ``run_chunk`` and ``run_batch``
    plan.py       ``WorkItem``, ``Plan``, ``ModelVersions``: hash the catalogue, skip what is stored,
                  split into chunks; failure rows
    execution.py  how a chunk's model calls are executed: the ``Executor`` interface, and
                  ``ChunkEnricher`` (on demand: a chunk's images side by side, as the call
                  windows allow)
    batch/        the same work through Bedrock batch jobs (records, jobs, results, fallback)
    submit.py     chunks submitted a window at a time while the run's budget admits them
    budget.py     ``RunBudget``: ``max_images`` and ``max_cost_usd``
    staging.py    a finished chunk as one Parquet file until it is committed (safe for concurrent runs)
    commit.py     staged chunks into the assets table in commits of ``commit_rows``; failures
    services.py   a run's clients and executor, built once from its settings
    retries.py    the retry budget: each layer's attempts, and their product bounded
    summary.py    ``RunSummary``, the typed outcome of a run
"""
