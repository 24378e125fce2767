# `make demo`: set up, then a real benchmark sweep and report. `make test`: set up, then the test suite (what CI
# runs). `make test-fast`: the suite without the tests marked slow, for the inner loop (under 3 min on 2 cores).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools -c constraints.txt || true
	$(PY) -m pip install -q -c constraints.txt -e '.[torch,triton,tvm,onnx,openvino,onednn,weights,cluster,test]'
	touch $(STAMP)

# One BLAS thread per test process and two processes (pytest-xdist): most tests are single-threaded NumPy and
# Triton-interpreter work, and two workers keep both cores busy without oversubscribing them.
# XDG_CACHE_HOME: the tests' caches (TVM tuning, `convbench tune`'s databases) in the checkout, never the user's,
# so a database tuned on this machine cannot change what a test compiles.
# OPENBLAS_CORETYPE=Haswell: NumPy's OpenBLAS runs the same (AVX2) kernels on every x86 CPU, so a float32 result is
# the same on whichever machine CI draws. Left to choose, it runs SkylakeX kernels on an AVX-512 Xeon and Haswell ones
# on a Zen, which sum in other orders. A float32 train step of a small-batch BN network is chaotic at ReLU/ReLU6
# boundaries: on an AMX Xeon MobileNet-V2's numpy step came 0.0079 off float64 (bound 0.0033) and ResNet-18's
# conv1.weight gradient 0.0080 (bound 0.0013), against 0.00135 and 0.00001 with the Haswell kernels (1 thread).
TEST_ENV := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell \
	XDG_CACHE_HOME=$(CURDIR)/.test-cache
test: $(STAMP)
	$(PY) -m ruff check .
	$(TEST_ENV) $(PY) -m pytest -q -n 2 --timeout 1200 --durations 15

test-fast: $(STAMP)
	$(PY) -m ruff check .
	$(TEST_ENV) $(PY) -m pytest -q -n 2 --timeout 600 -m "not slow" --durations 10

# The demo sweep: every registered backend (`convbench backends`; one not available here is recorded as
# unsupported, with its reason, without running) on six zoo models at their own input size,
# batch 1 and 8, one isolated process per case: 19.5 min on this 2-core machine at load ≈ 10. To continue an
# interrupted one, run the same `convbench run` line with --resume instead of --overwrite, then the report line.
DEMO_MODELS ?= lenet5,alexnet,vgg16,googlenet,resnet18,resnet50
DEMO_BACKENDS ?= all
DEMO_DIR ?= reports/demo
# The precision axis on the real network: efficientnet_lite0's ImageNet weights on the photographs, every dtype on
# the backends that have low precisions (a dtype one cannot run is recorded unsupported with its reason), batch 1
# and all five labelled photographs.
PRECISION_MODEL ?= efficientnet_lite0
PRECISION_BACKENDS ?= torch,onnxruntime,openvino,tvm
PRECISION_DTYPES ?= float32,bfloat16,float16,int8

demo: $(STAMP)
	$(VENV)/bin/convbench run -m $(DEMO_MODELS) -b $(DEMO_BACKENDS) --batch 1,8 --timeout 60 --max-time 1 \
		-o $(DEMO_DIR)/sweep.jsonl --overwrite
	$(VENV)/bin/convbench run -m $(PRECISION_MODEL) -b $(PRECISION_BACKENDS) --dtype $(PRECISION_DTYPES) --input real \
		--batch 1,5 --timeout 120 --max-time 1 -o $(DEMO_DIR)/precision.jsonl --overwrite
	$(VENV)/bin/convbench report $(DEMO_DIR)/sweep.jsonl $(DEMO_DIR)/precision.jsonl -o $(DEMO_DIR) \
		--title "convbench demo sweep"

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
