# The two commands: `make demo` and `make test`. Both install first (idempotent).
PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
# Override for another CUDA/CPU build, e.g. make install TORCH_SPEC="torch==2.5.1 torchvision==0.20.1"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP      := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test lint demo bench clean gpu-wheels gpu-check

install: $(STAMP)

# Re-runs only when the venv is new or the install recipe changed; every step is idempotent.
$(STAMP): setup.py salfmix/install/detectron2.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "setuptools<82" wheel
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -c "import cv2" 2>/dev/null || $(PY) -m pip install -q "opencv-contrib-python-headless>=4.9"
	$(PY) -m salfmix.install.detectron2
	touch $(STAMP)

test: install lint
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

# ruff.toml: pycodestyle, pyflakes, import order, bugbear, pyupgrade; and the formatter's layout.
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The whole pipeline on generated data (see tools/demo.sh); re-running skips finished stages.
demo: install
	PYTHON=$(PY) bash tools/demo.sh

bench: install
	$(PY) -m salfmix.bench.mixing
	$(PY) -m salfmix.bench.pretrain --suspects

# The GPU validation kit (tools/gpu_check.sh; README "Checking a GPU install"). gpu-wheels, on a
# machine with network: the files a CUDA machine without network needs, into .wheels/ (its total
# and the repository's are printed). gpu-check, on the CUDA machine: install what is missing
# from .wheels/, test, measure; the summary is $OUT/gpu_check.md (default output/gpu_check/).
gpu-wheels: install
	$(PY) -m salfmix.install.wheels download --dest .wheels

gpu-check:
	bash tools/gpu_check.sh

clean:
	rm -rf output build *.egg-info
