# Two commands do all set-up on a fresh machine:
#   make demo   - venv + package with napari and Qt, then napari with the plugin and a sample
#   make test   - venv + package with test tools, then the whole test suite (Xvfb if no display)
#
# torch: on a machine with an NVIDIA GPU (nvidia-smi works) pip installs the default
# (CUDA) build; otherwise $(TORCH) is installed first, so no multi-GB CUDA build is
# pulled. On other CPU-only machines point TORCH_INDEX at PyTorch's CPU wheels:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=
XVFB := xvfb-run -a -s "-screen 0 1600x1000x24"

.PHONY: demo test quick lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "torch already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  $(PIP) install torch; \
	else \
	  $(PIP) install "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	@touch $@

$(VENV)/.all: pyproject.toml $(VENV)/.torch
	$(PIP) install -e ".[all]"
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.torch
	$(PIP) install -e ".[dev]"
	@touch $@ $(VENV)/.all

demo: $(VENV)/.all
	$(PY) -m tomoprior._demo

test: $(VENV)/.dev
	@if [ -z "$$DISPLAY" ] && command -v xvfb-run >/dev/null 2>&1; then \
	  $(XVFB) $(PY) -m pytest $(PYTEST_ARGS); \
	else \
	  $(PY) -m pytest $(PYTEST_ARGS); \
	fi

# the suite without the tests marked slow (quality orderings, long fits): for editing loops
quick:
	$(MAKE) test PYTEST_ARGS='-m "not slow" $(PYTEST_ARGS)'

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks docs

bench: $(VENV)/.dev
	$(PY) benchmarks/projector.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
