# Set-up lives here so a fresh clone needs only `make demo` or `make test`.
# torch==2.13.0 goes in first, by pip: a CPU build lies on disk (pip's find-links), and a plain
# `torch` requirement resolved with no torch installed would download a multi-GB CUDA build.
# The rest goes in by uv (pinned, installed beside torch), which keeps the installed torch as it
# satisfies the range: the same pins as pip, in a fraction of pip's time (CI's budget).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgetune-installed

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0 uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[tune,demo,dev,serve,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgetune tune --max-train-minutes 1 --out runs/demo --overwrite

# three processes on two cores (many tests wait on subprocesses and servers), a test file
# each at a time (module fixtures stay in one)
test: $(STAMP)
	$(BIN)/pytest -q -n 3 --dist loadfile

# the edit loop: no real-model runs, no whole-pipeline families (both run in `make test`)
test-fast: $(STAMP)
	$(BIN)/pytest -q -n 3 --dist loadfile -m "not slow and not e2e"

lint: $(STAMP)
	$(BIN)/ruff check edgetune tests benchmarks
	$(BIN)/ruff format --check edgetune tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
