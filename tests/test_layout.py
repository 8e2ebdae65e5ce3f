"""The layering the README describes: the library imports neither Prefect nor the package above it."""

from __future__ import annotations

import subprocess
import sys

import pytest

_IMPORT_ALL = """
import importlib, pkgutil, sys
import media_enrichment
names = [m.name for m in pkgutil.walk_packages(media_enrichment.__path__, "media_enrichment.")]
for name in names:
    importlib.import_module(name)
above = sorted(m for m in sys.modules if m.split(".")[0] in ("prefect", "prefect_aws", "prefect_dask", "media_enrichment_prefect"))
print(len(names))
print(",".join(above))
"""


@pytest.mark.slow  # starts a Python process that imports every module of the library (6-18 s)
def test_the_library_imports_no_prefect_and_nothing_above_it():
    out = subprocess.run([sys.executable, "-c", _IMPORT_ALL], capture_output=True, text=True, check=True).stdout.split("\n")
    modules, above = int(out[0]), out[1]
    assert modules > 20, "every module of the library was imported"
    assert above == "", f"importing the library loaded {above}"
