# The two commands a newcomer needs: `make study` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROFILE ?= default
KERNEL := mlimages

.PHONY: study test lint lab bench gpu clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (mlimages)"
	touch $(STAMP)

study: $(STAMP)  ## run every notebook on the default profile into runs/default/
	$(BIN)/mlimages study --params $(PROFILE)

lint: $(STAMP)
	$(BIN)/ruff check mlimages tests benchmarks notebooks
	$(BIN)/ruff format --check mlimages tests benchmarks

test: $(STAMP) lint  ## unit tests, then every notebook on the smoke profile through nbval
	$(BIN)/python -m pytest -q -m "not slow" --timeout=900
	MLIMAGES_PROFILE=smoke $(BIN)/python -m pytest -q --nbval-lax --timeout=900 -p no:cacheprovider notebooks/

lab: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,lab]'
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

gpu: $(STAMP)  ## swap the CPU build of TensorFlow for the CUDA one (Linux x86_64 with an NVIDIA driver)
	$(BIN)/python -m pip uninstall --quiet -y tensorflow-cpu
	$(BIN)/python -m pip install --quiet 'tensorflow[and-cuda]>=2.16'

clean:
	rm -rf $(VENV) runs .pytest_cache
