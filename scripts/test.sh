#!/usr/bin/env bash
# Pixel Cascade's test command: set up what the tests need (a venv with torch, this pack and its test extras,
# a real ComfyUI 0.3.75 and the browser for the UI test), then run ruff and the default pytest suite.
#
#   bash scripts/test.sh [PYTEST ARGS...]      # e.g. -m slow, or tests/test_train_unet.py
#
# Env: VENV (default .venv of the clone), TORCH_SPEC (default torch==2.13.0, the CPU wheel here), COMFYUI_DIR
# (use your ComfyUI tree). Under CI=true the server and browser tests fail instead of skipping without them.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install -q --disable-pip-version-check --upgrade pip
# torch first: installing it first keeps pip from pulling a multi-GB CUDA build for "torch>=2.1"
python -c 'import torch' 2>/dev/null || python -m pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
python -m pip install -q --disable-pip-version-check -e ".[test]"
bash scripts/comfyui.sh install
bash scripts/comfyui.sh browser
ruff check . && python -m pytest -q "$@"
