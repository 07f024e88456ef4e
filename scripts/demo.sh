#!/usr/bin/env bash
# Pixel Cascade's main command: on a fresh clone, set everything up and run the built-in demo cascade
# (prompt -> T5 -> 64 -> 256 -> 1024 px -> GIT caption -> similarity with the prompt) on a real ComfyUI server.
#
#   bash scripts/demo.sh ["PROMPT"] [--out DIR] [--keep-server] [--port N]
#
# 1. creates .venv (python3 -m venv) if missing, installs torch, then this pack (pip install -e .);
# 2. installs ComfyUI 0.3.75 with scripts/comfyui.sh install, or uses your tree with COMFYUI_DIR=/path/to/ComfyUI;
# 3. starts it on 127.0.0.1 (port 8188 if free, else a free one) with this pack linked into custom_nodes;
# 4. queues workflows/api/demo_cascade.json through the HTTP API (scripts/run_demo.py), shows progress, and
#    writes demo_64.png, demo_256.png, demo_1024.png, caption.txt, score.txt and summary.json into DIR
#    (default ./demo_output);
# 5. stops the server, unless --keep-server (then open the printed URL to see the graph).
# Env: VENV (default .venv of the clone), PYTHON3 (python used to create it), TORCH_SPEC (default torch==2.13.0),
#      COMFYUI_DIR, DEMO_STEPS (e.g. 2,2,1: fewer steps per stage, a quick check). Safe to run again: set-up
#      steps that are done are skipped.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROMPT="" OUT="demo_output" KEEP=0 PORT=""
usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "demo.sh: --out needs a folder" >&2; exit 2; }; OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#--out=}"; shift ;;
    --port) [ $# -ge 2 ] || { echo "demo.sh: --port needs a number" >&2; exit 2; }; PORT="$2"; shift 2 ;;
    --port=*) PORT="${1#--port=}"; shift ;;
    --keep-server) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "demo.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$PROMPT" ] || { echo "demo.sh: one prompt only (quote it)" >&2; exit 2; }; PROMPT="$1"; shift ;;
  esac
done
if [ -n "$PORT" ] && ! [[ "$PORT" =~ ^[0-9]+$ ]]; then echo "demo.sh: --port must be a number, got $PORT" >&2; exit 2; fi

log() { printf '\n[demo] %s\n' "$*"; }
die() { printf '\n[demo] error: %s\n' "$*" >&2; exit 1; }

VENV="${VENV:-$HERE/.venv}"
PY="$VENV/bin/python"
pipi() { "$PY" -m pip install --disable-pip-version-check -q "$@" || die "pip install $* failed (see above)"; }

# -- 1. Python environment --------------------------------------------------------------------------------
if [ ! -x "$PY" ]; then
  log "creating $VENV"
  "${PYTHON3:-python3}" -m venv "$VENV" || die "python3 -m venv failed: install Python 3.10+ with venv (e.g. apt install python3-venv)"
fi
if ! "$PY" -c 'import torch' 2>/dev/null; then
  # torch first, so that the pack's "torch>=2.1" never pulls another build: the CPU wheel here; on user
  # machines pip picks their build (set TORCH_SPEC, or install torch into $VENV yourself beforehand)
  log "installing ${TORCH_SPEC:-torch==2.13.0}"
  pipi "${TORCH_SPEC:-torch==2.13.0}"
fi
STAMP="$VENV/.pixel_cascade_installed"
WANT="$HERE $(cksum < "$HERE/pyproject.toml")"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ] \
    || ! (cd / && "$PY" -c 'import cascade_core.demo' 2>/dev/null); then
  log "installing Pixel Cascade (pip install -e .)"
  pipi -e "$HERE"
  echo "$WANT" > "$STAMP"
fi

# -- 2. ComfyUI -------------------------------------------------------------------------------------------
export COMFY_ROOT="${COMFY_ROOT:-$HERE/.comfy_runtime}" PYTHON="$PY"
COMFY="${COMFYUI_DIR:-$COMFY_ROOT/ComfyUI}"
CSTAMP="$VENV/.pixel_cascade_comfyui"
if [ ! -f "$COMFY/comfyui_version.py" ] || [ ! -f "$CSTAMP" ] || [ "$(cat "$CSTAMP")" != "$COMFY" ]; then
  log "installing ComfyUI (scripts/comfyui.sh install${COMFYUI_DIR:+, your tree at $COMFYUI_DIR})"
  bash "$HERE/scripts/comfyui.sh" install || die "ComfyUI set-up failed (see above)"
  echo "$COMFY" > "$CSTAMP"
fi
[ -f "$COMFY/main.py" ] || die "no ComfyUI at $COMFY (COMFYUI_DIR must be a ComfyUI checkout)"

# -- 3. the server ----------------------------------------------------------------------------------------
port_free() { "$PY" -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }
if [ -z "$PORT" ]; then
  if port_free 8188; then PORT=8188
  else PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); fi
elif ! port_free "$PORT"; then
  die "port $PORT is in use: choose another with --port, or leave it out (8188 or a free port)"
fi
export COMFY_PORT="$PORT" COMFY_BASE="${COMFY_BASE:-$COMFY_ROOT/demo_base}" COMFY_RUN="$COMFY_ROOT/demo_run_$PORT"
export COMFYUI_DIR="$COMFY"
COMFY_CPU=$("$PY" -c 'import torch; print(0 if torch.cuda.is_available() else 1)' 2>/dev/null || echo 1)
export COMFY_CPU
URL="http://127.0.0.1:$PORT"
LOG="$COMFY_RUN/server.log"

stop_server() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$KEEP" = 1 ] && [ "$rc" = 0 ]; then
    log "server left running at $URL/ (log: $LOG). Stop it with:"
    echo "  COMFY_RUN=$COMFY_RUN bash $HERE/scripts/comfyui.sh stop"
  else
    bash "$HERE/scripts/comfyui.sh" stop >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap stop_server EXIT
trap 'exit 130' INT TERM

log "starting ComfyUI on $URL ($([ "$COMFY_CPU" = 1 ] && echo CPU || echo GPU))"
bash "$HERE/scripts/comfyui.sh" start || die "the ComfyUI server did not start (log: $LOG)"
if ! "$PY" - "$URL" <<'PYEOF'
import json, sys, urllib.request
info = json.load(urllib.request.urlopen(sys.argv[1] + "/object_info/PixelCascadeUNetLoader", timeout=30))
sys.exit(0 if info else 1)
PYEOF
then
  tail -40 "$LOG" >&2 || true
  die "ComfyUI started without the Pixel Cascade nodes (server log above)"
fi

# -- 4. the demo workflow ---------------------------------------------------------------------------------
log "running the demo cascade"
args=(--url "$URL" --out "$OUT" --log "$LOG")
[ -n "${DEMO_STEPS:-}" ] && args+=(--steps "$DEMO_STEPS")
[ -n "$PROMPT" ] && args+=("$PROMPT")
"$PY" "$HERE/scripts/run_demo.py" "${args[@]}" || die "the demo workflow failed (details above; server log: $LOG)"
