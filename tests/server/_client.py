"""A small client for a running ComfyUI server: JSON over HTTP (stdlib) and the websocket (aiohttp).

aiohttp is one of ComfyUI's own requirements, so it is present wherever the server tests can run.
"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

DONE = ("execution_success", "execution_error", "execution_interrupted")


@dataclass
class Run:
    """One prompt's outcome: id, the websocket messages seen for it (type, data) and its /history entry."""

    prompt_id: str
    messages: list[tuple[str, dict]] = field(default_factory=list)
    history: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.history.get("status", {}).get("status_str", "")

    def of_type(self, kind: str) -> list[dict]:
        return [data for t, data in self.messages if t == kind]

    def error(self) -> dict:
        """The ``execution_error`` payload (node_id, node_type, exception_message, ...)."""
        errors = self.of_type("execution_error")
        assert errors, f"no execution_error; messages: {[t for t, _ in self.messages]}"
        return errors[0]


class PromptRejected(AssertionError):
    """``POST /prompt`` answered with an error status; ``.status`` and ``.body`` hold the answer."""

    def __init__(self, status: int, body: dict):
        super().__init__(f"POST /prompt -> {status}: {json.dumps(body)[:2000]}")
        self.status, self.body = status, body


@dataclass
class ComfyServer:
    """A running server: its URL, its --base-directory and its log file."""

    url: str
    base: Path
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"(no server log: {e})"

    def request(self, method: str, path: str, body=None, timeout: float = 30) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw or b"null")
        except ValueError:  # not JSON (an image from /view, say)
            return status, raw

    def get(self, path: str):
        status, body = self.request("GET", path)
        assert status == 200, f"GET {path} -> {status}: {body!r:.500}\n--- server log ---\n{self.log_tail()}"
        return body

    def post_prompt(self, prompt: dict, client_id: str | None = None) -> str:
        status, body = self.request("POST", "/prompt", {"prompt": prompt, "client_id": client_id or "tests"})
        if status != 200:
            raise PromptRejected(status, body)
        return body["prompt_id"]

    def history(self, prompt_id: str, timeout: float = 120) -> dict:
        """Poll ``/history/<id>`` until the prompt has completed (successfully or not)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} not done after {timeout} s\n{self.log_tail()}")

    def run(self, prompt: dict, *, timeout: float = 180, on_message=None) -> Run:
        """Queue ``prompt`` with a websocket open; collect its messages until it ends; return the outcome.

        ``on_message(server, run, type, data)`` is called for every JSON message of this prompt.
        """
        run = asyncio.run(self._run_ws(prompt, timeout, on_message))
        run.history = self.history(run.prompt_id, timeout=30)
        return run

    async def _run_ws(self, prompt: dict, timeout: float, on_message) -> Run:
        import aiohttp

        client_id = uuid.uuid4().hex
        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={client_id}"
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
            run = Run(await asyncio.to_thread(self.post_prompt, prompt, client_id))
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"prompt {run.prompt_id} not done after {timeout} s\n{self.log_tail()}")
                msg = await ws.receive(timeout=left)
                if msg.type != aiohttp.WSMsgType.TEXT:  # binary frames carry previews
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        raise ConnectionError(f"websocket closed: {msg!r}\n{self.log_tail()}")
                    continue
                m = json.loads(msg.data)
                data = m.get("data") or {}
                if data.get("prompt_id") not in (None, run.prompt_id):
                    continue
                run.messages.append((m["type"], data))
                if on_message is not None:
                    await asyncio.to_thread(on_message, self, run, m["type"], data)
                if m["type"] in DONE and data.get("prompt_id") == run.prompt_id:
                    return run
