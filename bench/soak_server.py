"""A ComfyUI server for ``bench/soak.py``: micro checkpoints, the pack, the probe, start / stop / SIGKILL.

It uses ``scripts/comfyui.sh`` (as the server tests do) on a temporary base directory and a free port on
127.0.0.1, and the tests' own helpers (``tests/server/_checkpoints.py``, ``_client.py``, ``_workflows.py``).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO / "tests" / "server", REPO / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from _client import ComfyServer  # noqa: E402

SCRIPT = REPO / "scripts" / "comfyui.sh"
PROBE = Path(__file__).with_name("soak_probe.py")


def comfyui_dir(given: str | None) -> Path:
    """The ComfyUI tree: ``given``, ``$COMFYUI_DIR``, or ``.comfy_runtime/ComfyUI`` of this or the main checkout."""
    candidates = [given, os.environ.get("COMFYUI_DIR"), REPO / ".comfy_runtime" / "ComfyUI"]
    common = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--git-common-dir"], capture_output=True,
                            text=True, check=False).stdout.strip()
    if common:  # a git worktree: the main checkout's runtime
        candidates.append((REPO / common).resolve().parent / ".comfy_runtime" / "ComfyUI")
    for c in candidates:
        if c and (Path(c) / "comfyui_version.py").is_file():
            return Path(c)
    raise SystemExit("no ComfyUI tree found: pass --comfyui-dir, set COMFYUI_DIR or run scripts/comfyui.sh install")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> hex digest)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h = hashlib.sha256()
            with p.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[str(p.relative_to(root))] = h.hexdigest()
    return out


class SoakServer:
    """One ComfyUI process at a time on ``work/base`` (models, output, custom_nodes: pack + probe)."""

    def __init__(self, work: Path, comfy: Path, env: dict | None = None, args: str = ""):
        self.work, self.base, self.run_dir = work, work / "base", work / "run"
        self.port = free_port()
        self.env = dict(os.environ, COMFY_ROOT=str(work / "root"), COMFYUI_DIR=str(comfy), COMFY_PORT=str(self.port),
                        COMFY_BASE=str(self.base), COMFY_RUN=str(self.run_dir), PYTHON=sys.executable,
                        OMP_NUM_THREADS="1", **(env or {}))
        self.client = ComfyServer(f"http://127.0.0.1:{self.port}", self.base, self.run_dir / "server.log")
        self.starts = 0

    def prepare(self) -> None:
        """Micro checkpoints under ``base/models`` and the probe under ``base/custom_nodes``."""
        from _checkpoints import build_models

        if not (self.base / "models" / "pixel_cascade").is_dir():
            build_models(self.base / "models")
        probe = self.base / "custom_nodes" / "pc_soak_probe"
        probe.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROBE, probe / "__init__.py")

    def _script(self, command: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), command], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def start(self) -> float:
        """Start the server and wait until it answers; return the seconds it took."""
        t = time.monotonic()
        done = self._script("start", timeout=240)
        if done.returncode != 0:
            raise RuntimeError(f"ComfyUI did not start:\n{done.stderr[-3000:]}")
        self.starts += 1
        return time.monotonic() - t

    def stop(self) -> None:
        self._script("stop", timeout=60)

    @property
    def pid(self) -> int:
        return int((self.run_dir / "server.pid").read_text())

    def rss_mb(self) -> float:
        """The server's resident set (VmRSS of /proc/<pid>/status) in MiB."""
        with open(f"/proc/{self.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

    def kill9(self, timeout: float = 30) -> None:
        """SIGKILL the server and wait until the process is gone (or a zombie) and the port is closed."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/status") as f:
                    if any(line.startswith("State:") and "Z" in line for line in f):
                        break
            except FileNotFoundError:
                break
            time.sleep(0.05)
        (self.run_dir / "server.pid").unlink(missing_ok=True)

    def probe(self, path: str, body: dict | None = None):
        status, out = self.client.request("POST" if body is not None else "GET", f"/pc_probe/{path}", body,
                                          timeout=300)
        if status != 200:
            raise RuntimeError(f"probe {path} -> {status}: {out!r:.500}")
        return out
