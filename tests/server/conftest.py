"""Session fixtures for the real-server tests (marker ``server``): one ComfyUI process for the whole session.

ComfyUI comes from ``scripts/comfyui.sh install`` (idempotent; skipped when ``COMFYUI_DIR`` names an existing
tree). The server runs with a temporary ``--base-directory`` that holds this pack (symlinked into
``custom_nodes``) and the micro checkpoints of ``_checkpoints``, on a free loopback port, and is always
stopped at the end. Where ComfyUI or the browser cannot be installed the tests skip, except under
``CI=true``, where they fail.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _checkpoints import build_models
from _comfy_host import comfyui_tree, tree_version, version_mismatch
from _inputs import write_input_images
from _client import ComfyServer
from _runtime import REPO, ROOT, SCRIPT, unavailable

OUR_NODES = ("PixelCascadeT5Loader", "PixelCascadeUNetLoader", "PixelCascadeT5Encode", "PixelCascadeCFGGuider",
             "PixelCascadeBase64Sampler", "PixelCascadeSRUpsampler256")


def _script(command: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), command], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def comfyui_dir() -> Path:
    """An installed ComfyUI tree (``$COMFYUI_DIR`` as is, else installed by ``scripts/comfyui.sh install``)."""
    if os.environ.get("COMFYUI_DIR"):
        path = Path(os.environ["COMFYUI_DIR"])
        if not (path / "comfyui_version.py").is_file():
            unavailable(f"COMFYUI_DIR={path} is not a ComfyUI tree")
        return path
    env = dict(os.environ, COMFY_ROOT=str(ROOT), PYTHON=sys.executable)
    try:
        done = _script("install", env, timeout=1200)
    except subprocess.TimeoutExpired:
        unavailable("scripts/comfyui.sh install timed out")
    if done.returncode != 0:
        unavailable(f"scripts/comfyui.sh install failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return comfyui_tree()  # the tree install made for $COMFY_VERSION (0.3.75 by default)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests leave screenshots and logs: ``$PIXEL_CASCADE_ARTIFACTS`` or ``tests/artifacts/`` (ignored)."""
    path = Path(os.environ.get("PIXEL_CASCADE_ARTIFACTS") or REPO / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def comfy(comfyui_dir: Path, artifacts: Path, tmp_path_factory) -> ComfyServer:
    """A ComfyUI server with this pack and the micro checkpoints; yields a :class:`ComfyServer`."""
    work = tmp_path_factory.mktemp("comfy")
    base, run = work / "base", work / "run"
    build_models(base / "models")
    write_input_images(base / "input")
    port = _free_port()
    env = dict(os.environ, COMFY_ROOT=str(ROOT), COMFYUI_DIR=str(comfyui_dir), COMFY_PORT=str(port),
               COMFY_BASE=str(base), COMFY_RUN=str(run), PYTHON=sys.executable)
    # one torch thread: micro models gain nothing from more, and on a small shared machine (2 CI cores, the
    # test process beside the server) OpenMP spin-waiting made sampling ~10x slower
    env.setdefault("OMP_NUM_THREADS", "1")
    server = ComfyServer(f"http://127.0.0.1:{port}", base, run / "server.log")
    try:
        started = _script("start", env, timeout=180)
        if started.returncode != 0:
            pytest.fail(f"ComfyUI did not start:\n{started.stderr[-3000:]}", pytrace=False)
        running = server.get("/system_stats").get("system", {}).get("comfyui_version")
        problem = version_mismatch(running, f"the server started from {comfyui_dir}") or (
            None if running == tree_version(comfyui_dir) else
            f"the server reports ComfyUI {running}, but {comfyui_dir} is {tree_version(comfyui_dir)}")
        if problem:
            pytest.fail(problem, pytrace=False)
        info = server.get("/object_info")
        absent = [n for n in OUR_NODES if n not in info]
        if absent:
            pytest.fail(f"Pixel Cascade nodes not registered: {absent}\n{server.log_tail(60)}", pytrace=False)
        yield server
    finally:
        _script("stop", env, timeout=60)
        if server.log.is_file():
            shutil.copy(server.log, artifacts / "server.log")


@pytest.fixture(scope="session")
def browser_env() -> dict:
    """Environment for ``node ui_check.js``: Chromium and playwright-core from ``scripts/comfyui.sh browser``."""
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    modules = ROOT / "pw" / "node_modules"
    missing = [what for what, ok in (("node", shutil.which("node")), (chromium, Path(chromium).is_file()),
                                     (str(modules / "playwright-core"), (modules / "playwright-core").is_dir()))
               if not ok]
    if missing:
        unavailable(f"browser test needs {missing}: run scripts/comfyui.sh browser")
    return dict(os.environ, CHROMIUM=chromium, NODE_PATH=str(modules))
