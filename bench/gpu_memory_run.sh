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
. "$(dirname "$0")/gpu_setup.sh"
timeout 420 python3 bench/memory.py --out "$OUT/memory_${card}.json" 2>&1 | tee "$OUT/memory_log.txt"
timeout 120 python3 bench/fp8_error.py --device cuda --prompts 8 --seeds 2 --out "$OUT/fp8_error_${card}.json" 2>&1 \
  | tee "$OUT/fp8_log.txt"
