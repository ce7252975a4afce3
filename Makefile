# make test: build/refresh .venv and run the whole suite.  make demo: the main job.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo bench venv clean

venv: $(STAMP)

# Reinstall when the package metadata changes; the install is editable, so code changes
# need no reinstall.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

demo: $(STAMP)
	$(PY) examples/mnist_mlp.py

bench: $(STAMP)
	$(PY) -m tracecc.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
