# Two commands on a fresh machine: `make repro` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?=# `make install EXTRAS=gpu` on a GPU machine: NVIDIA's bindings for MLflow's GPU metrics

.PHONY: install lock repro test lint bench bench-corpus bench-tokenizer tune gpu-check clean slurm-up slurm-down

$(BIN)/python:
	$(PY) -m venv $(VENV)

# uv installs the same pins as pip in a tenth of the time (here: 24 s against 200-360 s).
# It does not read pip's config, so a wheel folder pip is told of (PIP_FIND_LINKS, or
# find-links in pip.conf: the CPU torch on this machine's disk) is passed on. It compiles the
# bytecode at install, as pip does: where PYTHONDONTWRITEBYTECODE is set (here it is), every
# test process would otherwise compile torch and MLflow from source again.
UV_INSTALL := $(BIN)/pip install --disable-pip-version-check -q uv==0.13.9
UV := $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PY) -m pip config get global.find-links 2>/dev/null))

# The install is requirements.lock's (`make lock` below): requirements.txt and the project
# resolved with the lock as constraints, so that every package comes at its locked version
# and is checked against its locked hashes. The lock has PyPI's torch, the CUDA build, and
# the NVIDIA CUDA packages it requires: a CUDA machine (no torch wheel in FIND_LINKS) gets
# the lock exactly. Where FIND_LINKS holds a torch wheel (torch-2.13.0+cpu here), uv takes
# it, as 2.13.0+cpu satisfies torch==2.13.0; nothing then requires the CUDA packages and
# they are not installed. That wheel is not PyPI's file: on such a machine, and only there,
# the constraints are the lock less torch's hashes ($(VENV)/constraints.txt). FIND_LINKS= on
# the command line gets PyPI's CUDA torch on a machine that has a CPU one.
LOCAL_TORCH ?= $(firstword $(foreach d,$(FIND_LINKS),$(wildcard $(patsubst file://%,%,$(d))/torch-*.whl)))
CONSTRAINTS := $(if $(LOCAL_TORCH),$(VENV)/constraints.txt,requirements.lock)

$(VENV)/constraints.txt: requirements.lock | $(BIN)/python
	sed -e '/^torch==/,/^[^ ]/{/^ *--hash/d;}' -e '/^torch==/s/ *\\$$//' requirements.lock > $@

$(STAMP): $(BIN)/python $(CONSTRAINTS) requirements.txt pyproject.toml
	$(UV_INSTALL)
	$(UV) $(if $(FIND_LINKS),--find-links $(FIND_LINKS)) -c $(CONSTRAINTS) \
	  -r requirements.txt -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	touch $(STAMP)

install: $(STAMP)

# requirements.lock: requirements.txt and pyproject.toml (its dependencies and extras)
# resolved by uv for CPython 3.11 on x86-64 Linux, every package pinned with its hashes. PyPI
# only, not FIND_LINKS: torch is locked as PyPI's torch==2.13.0 (no +cpu, no path) with its
# CUDA packages, and `make install` above picks the build. uv keeps the lock's pins where the
# inputs allow (`make lock UPGRADE=1`: the newest of everything). The header's inputs-sha256
# is tests/test_lock.py's digest of the inputs: that test fails while the lock is stale.
lock: $(BIN)/python
	$(UV_INSTALL)
	$(BIN)/uv pip compile -q requirements.txt pyproject.toml --all-extras --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header \
	  $(if $(UPGRADE),--upgrade) -o requirements.lock
	{ echo '# Every package of requirements.txt and pyproject.toml (dependencies and extras),' \
	  && echo '# pinned with hashes, for CPython 3.11 on x86-64 Linux. Made by `make lock`' \
	  && echo '# (uv pip compile); do not edit. torch is the PyPI build (CUDA, with NVIDIA'\''s' \
	  && echo '# packages): `make install` takes a CPU torch instead where FIND_LINKS holds one.' \
	  && echo "# inputs-sha256: $$($(BIN)/python tests/test_lock.py)" \
	  && cat requirements.lock; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock

# dvc runs each stage's `python -m ...` through PATH: put the venv first.
# pipeline.grid first: dvc.yaml's train stages follow params.yaml's grid: (a no-op when they do).
# WORKERS cells train at once, each in its own worktree on this clone's DVC cache, on
# cores/WORKERS threads each; then `dvc repro` restores them from the run cache and writes the
# report (pipeline/ops/workers.py). Two workers pay on a 2-core CPU (README); WORKERS=1: plain
# `dvc repro`.
WORKERS ?= 2
repro: install
	$(BIN)/python -m pipeline.grid
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pipeline.workers -j $(WORKERS)

# The SLURM tests use the one-node SLURM of `make slurm-up` when it is up (tests/_slurm.py);
# without one they skip, except under CI (CI=true), where .ci/run starts it first.
SLURM_DIR ?= /tmp/nanomoe-slurm
# pytest-xdist workers: one per core (auto). Many tests wait on servers, SLURM or DVC
# subprocesses, so a worker more than cores (TEST_WORKERS=3 on 2) keeps the cores busier.
TEST_WORKERS ?= auto
test: install
	$(BIN)/ruff check nanomoe pipeline tests
	$(if $(wildcard $(SLURM_DIR)/slurm.conf),SLURM_CONF=$(SLURM_DIR)/slurm.conf) \
	  $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# A one-node SLURM on this machine (slurm-wlm and munge, installed with apt-get when sbatch is
# absent; root): the cluster tests' and a developer's. `.ci/slurm env` prints its SLURM_CONF.
slurm-up:
	NANOMOE_SLURM_DIR=$(SLURM_DIR) .ci/slurm up

slurm-down:
	NANOMOE_SLURM_DIR=$(SLURM_DIR) .ci/slurm down

lint: install
	$(BIN)/ruff check nanomoe pipeline tests
	$(BIN)/ruff format --check nanomoe pipeline tests

bench: install
	$(BIN)/python -m pipeline.bench

# download and prepare on generated sharded corpora of 100, 400 and 800 MB of text: MB/s and
# peak RSS (pipeline/bench/corpus.py); needs ~2.5 GB of scratch space in $TMPDIR
bench-corpus: install
	$(BIN)/python -m pipeline.bench.corpus --mb 100 400 800

# the tokenizers on the corpus of data/raw/ (one text file): BPE training time, encode
# throughput and bytes per token (pipeline/bench/tokenizer.py)
TEXT ?= $(firstword $(wildcard data/raw/*.txt))
bench-tokenizer: install
	$(BIN)/python -m pipeline.bench.tokenizer --text $(TEXT)

tune: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pipeline.tune --trials 50

# On a CUDA machine as it stands: its own python3 and torch, no `make install` (no MLflow,
# DVC or Optuna needed). Writes experiments/gpu/gpu_check.json.
GPU_PY ?= python3
gpu-check:
	$(GPU_PY) -m pipeline.bench.gpu_check

clean:
	rm -rf $(VENV)
