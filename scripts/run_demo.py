"""Queue the shipped demo workflow on a running ComfyUI server and collect its results (standard library only).

    python scripts/run_demo.py "a large red circle on the left, on a white background" --url http://127.0.0.1:8188

Sends ``workflows/api/demo_cascade.json`` with the prompt through ``POST /prompt``, prints one line per node
(and ``step i/n`` for the samplers, from the server's websocket), then downloads the three images through
``/view`` into the output folder with ``caption.txt``, ``score.txt`` and ``summary.json``. ``scripts/demo.sh``
starts the server and calls this; it also works against any server that has the Pixel Cascade pack.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "workflows" / "api" / "demo_cascade.json"
SAMPLERS = ("PixelCascadeBase64Sampler", "PixelCascadeSRUpsampler256", "PixelCascadeSRUpsampler1024")


class DemoError(RuntimeError):
    """A failed step, with a message for the user."""


def default_prompt() -> str:
    sys.path.insert(0, str(REPO))
    try:
        from cascade_core.demo.settings import DEFAULT_PROMPT
    except ImportError:  # torch-free fallback (settings has no heavy imports, but the package might)
        return "a large red circle on the left, on a white background"
    return DEFAULT_PROMPT


# -- HTTP ------------------------------------------------------------------------------------------------
def http(url: str, body: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        raise DemoError(f"cannot reach the ComfyUI server at {url}: {e}") from e


def get_json(url: str):
    status, raw = http(url)
    if status != 200:
        raise DemoError(f"GET {url} -> HTTP {status}: {raw[:500]!r}")
    return json.loads(raw)


# -- a minimal websocket client (RFC 6455, text frames from the server, no extensions) ------------------
class WebSocket:
    def __init__(self, url: str, timeout: float):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + (f"?{u.query}" if u.query else "")
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("websocket closed by the server")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)  # control frames < 126 B

    def receive_text(self) -> str:
        """The next complete text message (binary preview frames are skipped, pings answered)."""
        parts, kind = [], None
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 8:
                raise ConnectionError("websocket closed by the server")
            if opcode == 9:
                self._send(10, payload)
                continue
            if opcode in (1, 2):
                kind, parts = opcode, [payload]
            elif opcode == 0:
                parts.append(payload)
            else:
                continue
            if b0 & 0x80:
                if kind == 1:
                    return b"".join(parts).decode("utf-8")
                parts, kind = [], None

    def close(self) -> None:
        try:
            self._send(8, b"")
        except OSError:
            pass
        self.sock.close()


# -- the run ---------------------------------------------------------------------------------------------
def prepare(workflow: dict, prompt: str, steps: list[int] | None) -> dict:
    """The workflow with ``prompt`` in its Prompt node and, if given, the samplers' steps (in cascade order)."""
    prompts = [n for n in workflow.values() if n["class_type"] == "PrimitiveStringMultiline"]
    if len(prompts) != 1:
        raise DemoError(f"{WORKFLOW}: expected one PrimitiveStringMultiline prompt node, found {len(prompts)}")
    prompts[0]["inputs"]["value"] = prompt
    if steps:
        samplers = [n for c in SAMPLERS for n in workflow.values() if n["class_type"] == c]
        if len(steps) != len(samplers):
            raise DemoError(f"--steps needs {len(samplers)} numbers (one per stage), got {steps}")
        for node, n in zip(samplers, steps):
            node["inputs"]["steps"] = n
    return workflow


def queue(url: str, workflow: dict, client_id: str) -> str:
    status, raw = http(url + "/prompt", {"prompt": workflow, "client_id": client_id})
    if status != 200:
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"error": raw.decode(errors="replace")[:1000]}
        lines = [f"the server refused the workflow (HTTP {status}): {body.get('error', {}).get('message', body)}"]
        for node_id, err in (body.get("node_errors") or {}).items():
            for e in err.get("errors", []):
                lines.append(f"  node {node_id} ({err.get('class_type')}): {e.get('message')}: {e.get('details')}")
        raise DemoError("\n".join(lines))
    return json.loads(raw)["prompt_id"]


def follow(url: str, prompt_id: str, client_id: str, ws: WebSocket | None, workflow: dict, timeout: float) -> dict:
    """Print progress until the prompt ends; return its /history entry."""
    deadline = time.monotonic() + timeout
    titles = {k: v.get("_meta", {}).get("title", v["class_type"]) for k, v in workflow.items()}
    order = {k: i + 1 for i, k in enumerate(workflow)}
    tty = sys.stdout.isatty()
    last, start = None, time.monotonic()
    while ws is not None and time.monotonic() < deadline:
        try:
            msg = json.loads(ws.receive_text())
        except (OSError, ConnectionError, ValueError) as e:
            print(f"(websocket lost: {e}; polling /history)", flush=True)
            break
        data = msg.get("data") or {}
        if data.get("prompt_id") not in (None, prompt_id):
            continue
        kind, node = msg.get("type"), str(data.get("node"))
        label = f"[{order.get(node, 0):2d}/{len(workflow)}] {titles.get(node, node)}"
        if kind == "executing" and data.get("node") is not None:
            if tty and last:
                print()
            print(f"{label}  (at {time.monotonic() - start:.1f} s)", flush=True)
            last = None
        elif kind == "progress":
            line = f"{label}: step {data.get('value')}/{data.get('max')}"
            print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
            last = line
        elif kind == "execution_cached" and data.get("nodes"):
            print(f"(cached: {len(data['nodes'])} nodes from an earlier identical run)", flush=True)
        elif kind in ("execution_success", "execution_error", "execution_interrupted"):
            if tty and last:
                print()
            break
    while time.monotonic() < deadline:
        entry = get_json(f"{url}/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            return entry
        time.sleep(0.2)
    raise DemoError(f"the demo did not finish within {timeout:.0f} s")


def failure(entry: dict) -> str:
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return (f"node {data.get('node_id')} ({data.get('node_type')}) failed: {data.get('exception_type')}: "
                    f"{data.get('exception_message')}")
    return f"the run ended with status {entry.get('status', {}).get('status_str')!r}"


def collect(url: str, workflow: dict, entry: dict, out: Path) -> dict:
    """Download the saved images and read the caption and the score from /history."""
    out.mkdir(parents=True, exist_ok=True)
    outputs = entry.get("outputs", {})
    images = {}
    for node_id, node in workflow.items():
        if node["class_type"] != "SaveImage":
            continue
        saved = outputs.get(node_id, {}).get("images") or []
        if not saved:
            raise DemoError(f"node {node_id} ({node['class_type']}) saved no image")
        query = urllib.parse.urlencode({k: saved[0][k] for k in ("filename", "subfolder", "type")})
        status, raw = http(f"{url}/view?{query}", timeout=60)
        if status != 200:
            raise DemoError(f"GET /view?{query} -> HTTP {status}")
        path = out / (Path(node["inputs"]["filename_prefix"]).name + ".png")
        path.write_bytes(raw)
        images[path.stem] = str(path)

    def text_of(class_type: str) -> str:
        node_id = next(k for k, v in workflow.items() if v["class_type"] == class_type)
        texts = outputs.get(node_id, {}).get("text") or []
        if not texts:
            raise DemoError(f"node {node_id} ({class_type}) returned no text in /history")
        return texts[0]

    caption = text_of("PixelCascadeGITCaption")
    ranking = text_of("PixelCascadeEmbeddingSimilarity")  # "image[0]: <prompt> (0.1234)"
    found = re.search(r"\((-?\d+(?:\.\d+)?(?:e-?\d+)?)\)\s*$", ranking.splitlines()[0])
    if not found:
        raise DemoError(f"no score in the similarity output {ranking!r}")
    return {"caption": caption, "score": float(found.group(1)), "images": images}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("prompt", nargs="?", default=None, help="what to draw (default: the demo's default prompt)")
    p.add_argument("--url", default="http://127.0.0.1:8188", help="the ComfyUI server")
    p.add_argument("--out", default="demo_output", help="output folder (default ./demo_output)")
    p.add_argument("--workflow", default=str(WORKFLOW), help="API workflow to queue")
    p.add_argument("--steps", default="", help="override the stages' steps, e.g. 2,2,1 (a quick check)")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for the run")
    p.add_argument("--log", default="", help="server log, whose tail is shown when something fails")
    args = p.parse_args(argv)
    url = args.url.rstrip("/")
    prompt = args.prompt if args.prompt and args.prompt.strip() else default_prompt()
    out = Path(args.out).resolve()
    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()] or None
        workflow = prepare(json.loads(Path(args.workflow).read_text(encoding="utf-8")), prompt, steps)
        get_json(url + "/system_stats")
        client_id = uuid.uuid4().hex
        try:
            ws = WebSocket(url.replace("http", "ws", 1) + f"/ws?clientId={client_id}", timeout=args.timeout)
        except (OSError, ConnectionError) as e:
            print(f"(no websocket: {e}; polling /history)")
            ws = None
        print(f"prompt: {prompt!r}")
        start = time.monotonic()
        prompt_id = queue(url, workflow, client_id)
        try:
            entry = follow(url, prompt_id, client_id, ws, workflow, args.timeout)
        finally:
            if ws is not None:
                ws.close()
        seconds = time.monotonic() - start
        if entry.get("status", {}).get("status_str") != "success":
            raise DemoError(failure(entry))
        result = collect(url, workflow, entry, out)
    except DemoError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        if args.log and Path(args.log).is_file():
            tail = Path(args.log).read_text(errors="replace").splitlines()[-30:]
            print("--- server log (last 30 lines) ---\n" + "\n".join(tail), file=sys.stderr)
        return 1
    (out / "caption.txt").write_text(result["caption"] + "\n", encoding="utf-8")
    (out / "score.txt").write_text(f"{result['score']:.4f}\n", encoding="utf-8")
    summary = {"prompt": prompt, "caption": result["caption"], "score": result["score"],
               "seconds": round(seconds, 2), "images": result["images"], "prompt_id": prompt_id, "server": url}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"\ndone in {seconds:.1f} s")
    for name, path in result["images"].items():
        print(f"  {name}: {path}")
    print(f"  caption: {result['caption']!r}  ({out / 'caption.txt'})")
    print(f"  similarity to the prompt: {result['score']:.4f}  ({out / 'score.txt'})")
    print(f"  summary: {out / 'summary.json'}")
    print(f"graph editor: {url}/  (load workflows/demo_cascade.json, or find it in the template browser)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
