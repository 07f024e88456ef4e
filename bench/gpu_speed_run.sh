#!/usr/bin/env bash
# The prepared device-machine run for issue 12 (one call, ~5-7 minutes on an H200): bench/cascade_gpu.py (the
# whole cascade at 100/50/75 steps, ours vs diffusers, TFLOP/s against the measured matmul ceiling, peaks, and the
# text-reuse / 50-25-25 preset variants); results and the log land in $OUT (default bench/results/).
# The device machine has torch but no diffusers: carry its wheel exactly as bench/gpu_memory_run.sh's header says,
# then: run(command="bash bench/gpu_speed_run.sh", carry=[".whl"], timeout_s=600)
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
timeout 540 python3 bench/cascade_gpu.py --out "$OUT/gpu_${card}.json" 2>&1 | tee "$OUT/gpu_speed_log.txt"
