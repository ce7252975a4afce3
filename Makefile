# make test: build/refresh .venv and run the whole suite.  make demo: the main job.
# make docs: regenerate the generated docs.  make bench: the benchmark suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo bench docs venv clean

venv: $(STAMP)

# Reinstall when the package metadata changes; the install is editable, so code changes
# need no reinstall.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

# Two test processes on two cores: each keeps numpy's BLAS to one thread, or their
# threads oversubscribe the cores and stall (measured: eager MNIST steps 30x slower).
test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -n 2 -q

demo: $(STAMP)
	$(PY) examples/demo.py

# docs/ops.md, docs/errors.md and the dump excerpts in docs/tour.md and README.md
docs: $(STAMP)
	$(PY) -m tracecc._docgen

bench: $(STAMP)
	$(PY) -m tracecc.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
