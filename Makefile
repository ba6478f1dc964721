# Two commands: `make run` (set up, then execute every notebook) and `make test`.
# TORCH picks the torch requirement: users get the normal PyPI build (GPU on Linux);
# a CPU-only machine can pass e.g. `make test TORCH=torch==2.13.0`.
PYTHON ?= python3
TORCH ?= torch
PROFILE ?= demo
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MPLBACKEND ?= Agg
export PYTHONHASHSEED ?= 0

.PHONY: setup data run test test-fast lint report clean clean-venv

setup: $(STAMP)

# Re-install only when the dependency list (pyproject.toml) changed; `make clean-venv` forces it.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

data: setup
	$(PY) -m helpers.demo_data

run: data
	$(PY) -m helpers.run_notebooks --profile $(PROFILE)
	$(PY) -m helpers.report --profile $(PROFILE)

report: setup
	$(PY) -m helpers.report --profile $(PROFILE)

# Unit, real-data and notebook tests in one pytest run; nbval re-executes 01-03 and compares
# the cells tagged nbval-check-output with their stored outputs.
NBVAL_NOTEBOOKS := notebooks/01_data_inspection.ipynb notebooks/02_mask_rendering.ipynb \
	notebooks/03_joint_dataset.ipynb

test: data
	$(PY) -m ruff check helpers tests
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests $(NBVAL_NOTEBOOKS) --nbval-lax

test-fast: data
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests -m "not slow and not notebook"

lint: setup
	$(PY) -m ruff check helpers tests

clean:
	rm -rf outputs data/demo data/prepared

clean-venv:
	rm -rf $(VENV)
