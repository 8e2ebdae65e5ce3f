"""Prefect tasks: thin wrappers around the library, one unit of work each."""
