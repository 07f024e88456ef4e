#!/usr/bin/env bash
# The prepared device-machine run for issue 10 (one call, well under 10 minutes on an H200):
#   bench/memory.py (policies x budgets vs diffusers' offloads, T5 pinned reload, auto+fp8) and
#   bench/fp8_error.py --device cuda; results and the log land in $OUT (default bench/results/).
# The device machine has torch and accelerate but no diffusers: carry its wheel. Here, once, in the repo root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1
# then: run(command="bash bench/gpu_memory_run.sh", carry=[".whl"], timeout_s=600)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results}"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
card=$(python3 -c 'import re, torch; print(re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name().lower()).strip("_"))')
timeout 420 python3 bench/memory.py --out "$OUT/memory_${card}.json" 2>&1 | tee "$OUT/memory_log.txt"
timeout 120 python3 bench/fp8_error.py --device cuda --prompts 8 --seeds 2 --out "$OUT/fp8_error_${card}.json" 2>&1 \
  | tee "$OUT/fp8_log.txt"
