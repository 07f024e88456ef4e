#!/usr/bin/env bash
# Pixel Cascade's test command: set up what the tests need, then run ruff and pytest against two ComfyUI hosts.
#
#   bash scripts/test.sh [PYTEST ARGS...]      # e.g. -m slow, or tests/test_train_unet.py
#
# 1. .venv with torch, this pack and its test extras, ComfyUI 0.3.75 (scripts/comfyui.sh install) and the
#    browser for the UI tests; then `ruff check .` and the default pytest suite on 0.3.75.
# 2. ComfyUI 0.33.0, the one users run now (COMFY_VERSION=0.33.0 scripts/comfyui.sh install: its own venv
#    .venv-033, tree .comfy_runtime/0.33.0/, from ../shared/comfyui/ComfyUI-0.33.0.tar.gz), and pytest of
#    tests/server + tests/nodes (browser tests included) on it with that venv. PYTEST ARGS go to both runs;
#    with none, run 2 takes tests/server tests/nodes.
# The script exits 0 only if ruff and both runs pass. Each run's first lines name its host ("ComfyUI host: ...").
#
# Env: VENV (default .venv of the clone), TORCH_SPEC (default torch==2.13.0, the CPU wheel here), COMFYUI_DIR
# (your ComfyUI tree for run 1), TEST_HOSTS ("0.3.75 0.33.0", the default; "0.3.75" alone skips run 2),
# COMFY_SHARED (folder of ComfyUI-0.33.0.tar.gz). Under CI=true the server and browser tests fail instead of
# skipping without ComfyUI or the browser.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
HOSTS="${TEST_HOSTS:-0.3.75 0.33.0}"
unset COMFY_VERSION  # each step below names its host
say() { printf '\n[test.sh] %s\n' "$*"; }
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install -q --disable-pip-version-check --upgrade pip
# torch first: installing it first keeps pip from pulling a multi-GB CUDA build for "torch>=2.1"
python -c 'import torch' 2>/dev/null || python -m pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
python -m pip install -q --disable-pip-version-check -e ".[test]"
bash scripts/comfyui.sh install
bash scripts/comfyui.sh browser
case " $HOSTS " in *" 0.33.0 "*) COMFY_VERSION=0.33.0 bash scripts/comfyui.sh install ;; esac
ruff check .

results=() status=0
run_host() {  # run_host LABEL EXPECTED-VERSION PYTHON COMFYUI_DIR ARTIFACTS PYTEST-ARGS...
  local label="$1" expect="$2" py="$3" tree="$4" artifacts="$5"; shift 5
  say "host $label: $tree, python $py: pytest $*"
  local rc=0 t0=$SECONDS
  COMFYUI_DIR="$tree" COMFY_EXPECT_VERSION="$expect" PIXEL_CASCADE_ARTIFACTS="$artifacts" \
    "$py" -m pytest -q "$@" || rc=$?
  case $rc in
    0) results+=("$label: passed in $((SECONDS - t0)) s") ;;
    5) results+=("$label: no tests selected") ;;
    *) results+=("$label: FAILED (pytest exit $rc) in $((SECONDS - t0)) s"); status=1 ;;
  esac
}
for host in $HOSTS; do
  case "$host" in
    0.3.75)
      if [ -n "${COMFYUI_DIR:-}" ]; then label="your COMFYUI_DIR (in place of 0.3.75)" expect=""
      else label="ComfyUI 0.3.75" expect=0.3.75; fi
      run_host "$label" "$expect" "$VENV/bin/python" "$(bash scripts/comfyui.sh dir)" \
        "${PIXEL_CASCADE_ARTIFACTS:-$PWD/tests/artifacts}" "$@" ;;
    0.33.0)
      if [ $# -gt 0 ]; then args=("$@"); else args=(tests/server tests/nodes); fi
      run_host "ComfyUI 0.33.0" 0.33.0 "${COMFY_VENV:-$PWD/.venv-033}/bin/python" \
        "$(env -u COMFYUI_DIR COMFY_VERSION=0.33.0 bash scripts/comfyui.sh dir)" \
        "${PIXEL_CASCADE_ARTIFACTS:-$PWD/tests/artifacts}/0.33.0" "${args[@]}" ;;
    *) echo "test.sh: unknown host $host in TEST_HOSTS (0.3.75, 0.33.0)" >&2; exit 2 ;;
  esac
done
say "summary"; printf '  %s\n' "${results[@]}"
exit $status
