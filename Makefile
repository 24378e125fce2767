# `make demo`: set up, then a real benchmark sweep and report. `make test`: set up, then the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools -c constraints.txt || true
	$(PY) -m pip install -q -c constraints.txt -e '.[torch,triton,tvm,onnx,test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/convbench models

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
