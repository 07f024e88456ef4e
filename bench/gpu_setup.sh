# Sourced by the prepared device-machine runs (bench/gpu_*_run.sh): repo root, $OUT (default bench/results/),
# the carried diffusers wheel (.whl/, see bench/gpu_memory_run.sh's header) on PYTHONPATH, the card's name in
# $OUT/gpu.txt and its slug in $card.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-bench/results}"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
card=$(python3 -c 'import re, torch; print(re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name().lower()).strip("_"))')
