# The two commands a newcomer needs: `make run` and `make test`. Both set themselves up.
SHELL       := bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# pip on some machines warns about configured local indexes that do not exist; hide only that.
QUIET_PIP := { grep -v "^WARNING: Location" || true; }

.PHONY: run test lint exercises bench setup clean

# Create the virtual environment once and install the package with its dev extra.
# With the tested torch/torchvision releases (constraints.txt); redone when either file changes.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 2>&1 | $(QUIET_PIP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]' 2>&1 | $(QUIET_PIP)
	$(PY) -c "import ccloss, torch, torchvision, papermill, nbval"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ccloss)" > /dev/null
	touch $(STAMP)

setup: $(STAMP)

# Execute the notebooks on the embedded MNIST digits (writes figures/), then print the CE+CAM vs CC-Loss table.
run: $(STAMP)
	$(PY) -m tools.run_all

# Every test suite, and every notebook executed start to end with nbval (outputs of cells marked
# `# NBVAL_CHECK_OUTPUT` compared after notebooks/sanitize.cfg), in pytest-xdist workers: each notebook's
# cells in one worker, in order, with the notebook whose runs it reads (05 reads 02's;
# notebooks/conftest.py). The notebooks come first, so that the longest unit (02, then 05) starts at once.
# One worker more than the 2 cores of CI: the subprocess, SLURM and kill tests spend much of their time
# waiting, and every worker keeps torch to one thread (tests/conftest.py).
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg
JOBS ?= 3

test: lint
	$(PY) -m pytest notebooks tests $(NBVAL) -n $(JOBS) -p no:cacheprovider --timeout 1800 --durations 15

# ruff: the lint rules and the formatting of pyproject.toml, on the package, tests, benchmarks and notebooks.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Rewrite notebooks/exercises/ from the notebooks' solution cells (a test fails when they differ).
exercises: $(STAMP)
	$(PY) -m tools.exercises

# CPU benchmarks (each prints its ratio last); see benchmarks/README.md.
bench: $(STAMP)
	$(PY) benchmarks/run_cpu.py

clean:
	rm -rf $(VENV) runs .pytest_cache
