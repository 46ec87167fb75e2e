# The two commands a newcomer needs: `make study` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROFILE ?= default
KERNEL := mlimages

.PHONY: study experiments test regress regress-update test-slow horovod-env test-horovod \
	backends-env test-backends lint lab bench gpu clean

$(STAMP): pyproject.toml setup.py mlimages/data/labels/_labelscan.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (mlimages)"
	touch $(STAMP)

study: $(STAMP)  ## run every notebook on the default profile into runs/default/
	$(BIN)/mlimages study --params $(PROFILE)

# The experiments beyond the paper (notebook 08): upstream notebooks 01-04 first (kept where
# already made), then the sweeps; not part of `make study`, which they would triple.
experiments: $(STAMP)  ## loss ablation, data-efficiency curve, novel classes (notebook 08)
	$(BIN)/mlimages study --params $(PROFILE) --only 01 02 03 04 08

lint: $(STAMP)
	$(BIN)/ruff check mlimages tests benchmarks notebooks
	$(BIN)/ruff format --check mlimages tests benchmarks

test: $(STAMP) lint  ## unit tests, then the notebooks' regression copies (smoke profile) through nbval
	$(BIN)/python -m pytest -q -m "not slow" --timeout=900
	$(MAKE) regress

# The notebooks' regression copies (tests/notebooks/, executed on the smoke profile): run again
# and compared through the sanitiser, in the environment tests/notebook_regression.py sets.
regress: $(STAMP)  ## re-execute tests/notebooks/ and compare every output a reader sees
	$(BIN)/python tests/notebook_regression.py check

regress-update: $(STAMP)  ## after an intended change: execute the notebooks into tests/notebooks/
	$(BIN)/python tests/notebook_regression.py update

test-slow: $(STAMP)  ## the slow tests: e.g. two whole smoke studies give identical tables
	$(BIN)/python -m pytest -q -m slow --timeout=3600

# Horovod's last release (0.28.1) is source-only and compiles against TensorFlow <= 2.13 only
# (Keras 2): its own venv, CPU, Gloo, no MPI. numpy is pinned with TensorFlow in one
# command because TF 2.13 needs numpy <= 1.24.3.
HVD_VENV := .venv-horovod
HVD_BIN := $(HVD_VENV)/bin
HVD_BUILT := $(HVD_VENV)/.horovod-built-stamp
HVD_STAMP := $(HVD_VENV)/.installed-stamp
PYTHON_HOROVOD ?= python3.11
HVD_FLAGS := HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
	HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1

$(HVD_BUILT):  # TensorFlow 2.13 and the Horovod build: once (minutes)
	test -x $(HVD_BIN)/python || $(PYTHON_HOROVOD) -m venv $(HVD_VENV)
	$(HVD_BIN)/python -m pip install --quiet --upgrade pip
	$(HVD_BIN)/python -m pip install --quiet 'tensorflow-cpu==2.13.1' 'numpy==1.24.3' \
		'setuptools<70' wheel 'cmake>=3.13' packaging psutil pyyaml cloudpickle
	$(HVD_FLAGS) $(HVD_BIN)/python -m pip install --quiet --no-build-isolation --no-cache-dir \
		'horovod==0.28.1'
	$(HVD_BIN)/horovodrun --check-build
	touch $(HVD_BUILT)

# This package without its (TF 2.21-era) pins, then what the training path imports at versions
# numpy 1.24 allows. pip then warns that TF 2.13 wants typing-extensions < 4.6: pydantic 2 needs
# a newer one, and TF 2.13 runs with it.
$(HVD_STAMP): $(HVD_BUILT) pyproject.toml
	$(HVD_BIN)/python -m pip install --quiet --no-deps -e .
	$(HVD_BIN)/python -m pip install --quiet 'numpy==1.24.3' 'pandas>=2.0,<2.1' 'pydantic>=2.5' \
		'pyyaml>=6' 'tqdm>=4.66' 'pillow>=10' 'google-crc32c>=1.5' 'pytest>=8' 'pytest-timeout>=2.3'
	touch $(HVD_STAMP)

horovod-env: $(HVD_STAMP)  ## the Horovod backend's environment (TF 2.13 CPU, Gloo); ~4 min once

test-horovod: $(HVD_STAMP)  ## two Horovod workers (Gloo) train, checkpoint, resume after kill -9
	$(HVD_BIN)/python -m pytest -q --timeout=900 -p no:cacheprovider tests/horovod

# Keras 3's JAX and PyTorch backends: their own venv (CPU builds, no TensorFlow), so that .venv
# stays as it is. torch==2.13.0 is a CPU build this machine's pip finds on its disk (a plain
# `torch` would be the multi-GB CUDA one): set TORCH to a CPU build's spec elsewhere. The
# authors' checkpoint fixture is converted first by the main environment (reading TF1 needs
# TensorFlow); the tests run once per backend.
BK_VENV := .venv-backends
BK_BIN := $(BK_VENV)/bin
BK_STAMP := $(BK_VENV)/.installed-stamp
PYTHON_BACKENDS ?= python3.11
TORCH ?= torch==2.13.0
MLIMAGES_REFERENCE ?= ../shared/ml-images
AUTHORS_CKPT := $(MLIMAGES_REFERENCE)/ckpt-resnet50-authors-random
CONVERTED := runs/backends/resnet50.keras

$(BK_STAMP): pyproject.toml
	test -x $(BK_BIN)/python || $(PYTHON_BACKENDS) -m venv $(BK_VENV)
	$(BK_BIN)/python -m pip install --quiet --upgrade pip
	$(BK_BIN)/python -m pip install --quiet '$(TORCH)' 'keras>=3.15,<4' jax jaxlib 'numpy>=1.26' \
		h5py 'pydantic>=2.5' 'pyyaml>=6' 'pytest>=8' 'pytest-timeout>=2.3'
	$(BK_BIN)/python -m pip install --quiet --no-deps -e .
	touch $(BK_STAMP)

backends-env: $(BK_STAMP)  ## the JAX and PyTorch backends' environment (CPU builds)

$(CONVERTED): $(STAMP)
	@if test -f $(AUTHORS_CKPT)/model.ckpt.index; then \
		$(BIN)/mlimages model convert-tf1 $(AUTHORS_CKPT)/model.ckpt --depth 50 \
			--num-classes 10 --out $(CONVERTED); \
	else echo "no checkpoint fixture at $(AUTHORS_CKPT): its conversion test will skip"; fi

test-backends: $(BK_STAMP) $(CONVERTED)  ## model, loss, momentum, converted file, benchmark: JAX, PyTorch
	for backend in jax torch; do \
		KERAS_BACKEND=$$backend MLIMAGES_CONVERTED=$(CONVERTED) \
		$(BK_BIN)/python -m pytest -q --timeout=900 -p no:cacheprovider tests/backends || exit 1; \
	done

lab: $(STAMP)  ## JupyterLab on the notebooks (installed with everything else by the venv)
	$(BIN)/jupyter lab notebooks/

# Each benchmark once, stopping at the first missed goal. benchmarks/download.py creates
# img2dataset's own environment (~/.cache/mlimages/img2dataset-venv, PyPI once) on first use.
bench: $(STAMP)  ## every benchmark in benchmarks/; exit 0 when all their goals hold
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

gpu: $(STAMP)  ## swap the CPU build of TensorFlow for the CUDA one (Linux x86_64 with an NVIDIA driver)
	$(BIN)/python -m pip uninstall --quiet -y tensorflow-cpu
	$(BIN)/python -m pip install --quiet 'tensorflow[and-cuda]>=2.16'

clean:
	rm -rf $(VENV) $(HVD_VENV) $(BK_VENV) runs .pytest_cache
