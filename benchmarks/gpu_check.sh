#!/usr/bin/env bash
# The Triton backend's GPU check, in one command for a lent CUDA machine (the `device` tool's `run`):
# install this checkout into the machine's own Python (its torch and triton; no network there), run the Triton
# tests natively (kernels, conformance op cases in fp32 and fp16, the zoo at reduced inputs), then
# benchmarks/triton_gpu.py on ResNet-50: every conv/linear layer shape against cuDNN/cuBLAS and the whole model
# against torch eager and torch.compile. Logs and the harness-format JSONL land in $OUT (default gpu_out/).
#
#     bash benchmarks/gpu_check.sh   # under 10 min: limits 150+270+80+40 s (TEST_S FP16_S B1_S FP32_S), TUNE_S=100
#
# Each stage has its own time limit, so one slow stage cannot eat the others' share of a short lease.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PY=${PY:-python3}

stage() {  # stage NAME SECONDS CMD...: run CMD with a limit, tee its log to $OUT/NAME.log, report its status
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - start))s" | tee -a "$OUT/stages.txt"
}

$PY -m pip install -q --no-deps --no-build-isolation -e . || exit 1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import torch, triton; print('python', __import__('sys').version.split()[0], 'torch', torch.__version__,
  'triton', triton.__version__, 'cuda', torch.version.cuda)"; } | tee "$OUT/machine.txt"

stage tests "${TEST_S:-150}" $PY -m pytest -q -n 8 -p no:cacheprovider --timeout 120 \
    tests/test_triton_kernels.py tests/test_triton_nhwc.py tests/test_triton_backend.py tests/test_triton_models.py \
    tests/test_precision_ops.py::test_triton_int8_convs_read_the_codes
stage resnet50_fp16 "${FP16_S:-270}" $PY benchmarks/triton_gpu.py -m resnet50 --dtype float16 --batch 32 --tune \
    --tune-budget-s "${TUNE_S:-100}" -o "$OUT/triton_gpu.jsonl"
stage resnet50_fp16_b1 "${B1_S:-80}" $PY benchmarks/triton_gpu.py -m resnet50 --dtype float16 --batch 1 \
    --no-layers -o "$OUT/triton_gpu.jsonl"
stage resnet50_fp32 "${FP32_S:-40}" $PY benchmarks/triton_gpu.py -m resnet50 --dtype float32 --batch 32 \
    --no-models -o "$OUT/triton_gpu.jsonl"
cat "$OUT/stages.txt"
