# Two entry points: `make demo` (enrich the generated sample catalogue offline) and
# `make test` (the whole suite). Both create the virtual environment they need; CI (.ci/run)
# runs both on a fresh clone, the demo first. The demo's outputs (data/, .prefect/) are ignored
# by git and by the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast install browser clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# rapidocr-onnxruntime pins the GUI build of OpenCV (needs libGL); its other
	# requirements, with the headless OpenCV, come from pyproject.toml.
	$(BIN)/pip install --quiet --no-deps rapidocr-onnxruntime==1.4.4
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/media-enrich demo

# Two pytest-xdist workers: the suite waits on servers and subprocesses more than it computes,
# so two workers finish it in 7-13 minutes on 2 cores; one alone would near the 15-minute budget.
test: $(STAMP) browser
	$(BIN)/pytest -n 2

# The inner loop (under a minute on 2 cores): the library's own logic in-process, no Prefect, no
# server, no process, no OCR; the fuzz tests at 10 examples each (tests/conftest.py says what is slow).
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow" -q -n 2 --hypothesis-profile=fast

# The UI test drives Debian's Chromium (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the UI test (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf $(VENV) .prefect data
