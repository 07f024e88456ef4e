#!/usr/bin/env bash
# The prepared device-machine run for issue 12 (one call, ~5-7 minutes on an H200): bench/cascade_gpu.py (the
# whole cascade at 100/50/75 steps, ours vs diffusers, TFLOP/s against the measured matmul ceiling, peaks, and the
# text-reuse / 50-25-25 preset variants); results and the log land in $OUT (default bench/results/).
# The device machine has torch but no diffusers: carry its wheel exactly as bench/gpu_memory_run.sh's header says,
# then: run(command="bash bench/gpu_speed_run.sh", carry=[".whl"], timeout_s=600)
set -uo pipefail
. "$(dirname "$0")/gpu_setup.sh"
timeout 540 python3 bench/cascade_gpu.py --out "$OUT/gpu_${card}.json" 2>&1 | tee "$OUT/gpu_speed_log.txt"
