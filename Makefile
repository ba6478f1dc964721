# Two commands: `make run` (set up, then execute every notebook) and `make test`.
# `make smoke` runs every notebook on the full-size architecture (random weights) and the real
# exports beside the repository, a few steps and a few images: the full profile's path, in minutes.
# TORCH picks the torch requirement (pip arguments, unquoted): users get the normal PyPI build
# (GPU on Linux); a CPU-only machine can pass
# TORCH="torch --index-url https://download.pytorch.org/whl/cpu". Set-up runs once: after
# `make clean-venv` a new TORCH takes effect.
PYTHON ?= python3
TORCH ?= torch
PROFILE ?= demo
SHARED_DATA ?= $(or $(DRYWALL_SHARED_DIR),../shared)/data/roboflow
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MPLBACKEND ?= Agg
export PYTHONHASHSEED ?= 0
# Set-up installs without byte-compiling (--no-compile): each module is compiled when first
# imported and its .pyc kept in the venv. That needs bytecode writing on, so an inherited
# PYTHONDONTWRITEBYTECODE is dropped; with it every notebook kernel and test process would
# recompile torch, transformers and pandas from source (about 4 s each).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup data run smoke bench test test-fast test-gpu lint report clean clean-venv

setup: $(STAMP)

# Re-install only when the dependency list (pyproject.toml) changed; `make clean-venv` forces it.
# --no-compile: modules are byte-compiled when first imported, not all of them at install.
PIP := $(PY) -m pip install --quiet --no-compile --disable-pip-version-check
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) $(TORCH)
	$(PIP) -e ".[dev]"
	touch $(STAMP)

data: setup
	$(PY) -m helpers.demo_data

# DEVICE=cuda and PRECISION=bf16 (or fp16, fp32) override the profile's "auto" for a run.
RUN_FLAGS = $(if $(DEVICE),--device $(DEVICE)) $(if $(PRECISION),--precision $(PRECISION))
run: data
	$(PY) -m helpers.run_notebooks --profile $(PROFILE) $(RUN_FLAGS)
	$(PY) -m helpers.report --profile $(PROFILE)

# Skipped, with the reason, where the real exports are not beside the repository.
smoke: data
	@if [ ! -d "$(SHARED_DATA)/cracks.v1i.coco" ] || [ ! -d "$(SHARED_DATA)/drywall-join-detect.v2i.coco" ]; then \
		echo "smoke skipped: the real exports are not in $(SHARED_DATA) (cracks.v1i.coco, drywall-join-detect.v2i.coco)"; \
	else \
		HF_HUB_OFFLINE=1 $(PY) -m helpers.run_notebooks --profile smoke $(RUN_FLAGS) && \
		$(PY) -m helpers.report --profile smoke; \
	fi

report: setup
	$(PY) -m helpers.report --profile $(PROFILE)

# Course paths against the model alone, side by side (helpers.course.benchmarks). BENCH=--quick (tiny model,
# demo data, a few minutes on a CPU) or BENCH=--full-size (the real architecture on the exports
# beside the repository: meant for a GPU). The numbers land in outputs/bench.json.
BENCH ?= --quick
bench: data
	HF_HUB_OFFLINE=1 $(PY) -m helpers.bench $(BENCH) \
		$(if $(findstring full-size,$(BENCH)),--cracks $(SHARED_DATA)/cracks.v1i.coco \
		--taping $(SHARED_DATA)/drywall-join-detect.v2i.coco) --json outputs/bench.json

# Unit, real-data, notebook and smoke tests in one pytest run (tests/test_smoke.py runs the smoke
# profile; tests marked gpu skip without CUDA); nbval re-executes 01-03 and compares the cells
# tagged nbval-check-output with their stored outputs. Two pytest-xdist workers, one test file
# each at a time, with one thread per process: two threads in each of two workers would fight
# over two cores.
TEST_WORKERS ?= 2
NBVAL_NOTEBOOKS := notebooks/01_data_inspection.ipynb notebooks/02_mask_rendering.ipynb \
	notebooks/03_joint_dataset.ipynb

test: data
	$(PY) -m ruff check helpers tests
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile \
		tests $(NBVAL_NOTEBOOKS) --nbval-lax

test-fast: data
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests -m "not slow and not notebook"

# The CUDA tier alone (every test skips with its reason on a machine without CUDA).
test-gpu: data
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests -m gpu

lint: setup
	$(PY) -m ruff check helpers tests

clean:  # generated files only; the READMEs of data/ and outputs/ stay
	find outputs -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf data/demo data/prepared data/cache

clean-venv:
	rm -rf $(VENV)
