"""A measuring probe for ``bench/soak.py``: HTTP routes inside the ComfyUI server, never part of the pack.

``bench/soak.py`` copies this file as ``__init__.py`` into ``<temp base>/custom_nodes/pc_soak_probe/`` of the
server it starts, so the probe runs in the server process beside Pixel Cascade and can look at its memory:

- ``GET  /pc_probe/stats``  RSS, glibc ``mallinfo2`` (heap in use / free inside the arenas), live torch tensors
  (count, unique storage bytes), gc object count, the pack's ``EmbeddingCache`` (entries, bytes, hits, misses),
  ``nodes.memory._LOADED`` entries, ComfyUI's loaded models, node-output cache entries and history size;
- ``POST /pc_probe/trim``   ``malloc_trim(0)``: RSS before / after (what the allocator held but nothing used);
- ``POST /pc_probe/cache``  ``{"max_entries": n}``: resize (0 = disable and clear) the pack's embedding cache;
- ``POST /pc_probe/tracemalloc`` ``{"action": "start" | "diff"}``: Python allocations grown since ``start``;
- ``POST /pc_probe/identity`` ``{"path": p, "repeat": n}``: time ``nodes.memory._identity`` on a folder;
- ``POST /pc_probe/t5time`` ``{"text": t, "repeat": n}``: time the loaded T5's ``encode`` with a cache hit and
  with ``use_cache=False`` (what a miss costs: the text and the ``""`` filler are both encoded).
"""
from __future__ import annotations

import ctypes
import gc
import json
import sys
import time
import tracemalloc

from aiohttp import web
from server import PromptServer

NODE_CLASS_MAPPINGS: dict = {}
routes = PromptServer.instance.routes
_state: dict = {}


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mallinfo() -> dict:
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return {}
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    # arena: heap bytes from sbrk/mmap'd arenas; hblkhd: big mmap'd blocks; uordblks: in use; fordblks: free
    return {"arena_mb": m.arena / 2**20, "mmap_mb": m.hblkhd / 2**20, "in_use_mb": m.uordblks / 2**20,
            "free_in_arenas_mb": m.fordblks / 2**20}


def _module(suffix: str, attr: str):
    for name, mod in list(sys.modules.items()):
        if name.endswith(suffix) and hasattr(mod, attr):
            return mod
    return None


def _tensors() -> dict:
    import torch

    storages, count = {}, 0
    for obj in gc.get_objects():
        try:
            if isinstance(obj, torch.Tensor) and obj.device.type == "cpu":
                count += 1
                s = obj.untyped_storage()
                storages[s.data_ptr()] = s.nbytes()
        except Exception:  # noqa: S112 (half-built objects during gc)
            continue
    return {"count": count, "storage_mb": sum(storages.values()) / 2**20}


def _executor_cache_entries() -> int | None:
    import execution

    for obj in gc.get_objects():
        if isinstance(obj, execution.PromptExecutor):
            def size(cache) -> int:
                n = len(getattr(cache, "cache", {}) or {})
                return n + sum(size(c) for c in (getattr(cache, "subcaches", {}) or {}).values())
            return size(obj.caches.outputs)
    return None


@routes.get("/pc_probe/stats")
async def stats(request):
    gc.collect()
    out = {"rss_mb": _rss_kb() / 1024, "malloc": _mallinfo(), "gc_objects": len(gc.get_objects()),
           "tensors": _tensors(), "node_output_cache_entries": _executor_cache_entries()}
    cache = _module("cascade_core.text.cache", "DEFAULT_CACHE")
    if cache is not None:
        c = cache.DEFAULT_CACHE
        out["embedding_cache"] = {"entries": len(c), "mb": c.nbytes / 2**20, "hits": c.hits, "misses": c.misses,
                                  "max_entries": c.max_entries}
    mem = _module("nodes.memory", "_LOADED")
    if mem is not None:
        out["pack_loaded_models"] = len(mem._LOADED)
    import comfy.model_management as mm

    out["comfy_loaded_models"] = len(mm.current_loaded_models)
    history = PromptServer.instance.prompt_queue.history
    out["history"] = {"entries": len(history), "json_mb": len(json.dumps(history, default=str)) / 2**20}
    if tracemalloc.is_tracing():
        out["tracemalloc_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
    return web.json_response(out)


@routes.post("/pc_probe/trim")
async def trim(request):
    gc.collect()
    before, libc = _rss_kb(), _libc()
    t = time.perf_counter()
    freed = bool(libc.malloc_trim(0)) if libc is not None else None
    ms = (time.perf_counter() - t) * 1e3
    return web.json_response({"rss_before_mb": before / 1024, "rss_after_mb": _rss_kb() / 1024, "released": freed,
                              "trim_ms": ms,                              "malloc_after": _mallinfo()})


@routes.post("/pc_probe/cache")
async def set_cache(request):
    body = await request.json()
    c = _module("cascade_core.text.cache", "DEFAULT_CACHE").DEFAULT_CACHE
    c.max_entries = int(body["max_entries"])
    if c.max_entries == 0:
        c.clear()
    return web.json_response({"max_entries": c.max_entries, "entries": len(c)})


@routes.post("/pc_probe/tracemalloc")
async def trace(request):
    body = await request.json()
    if body["action"] == "start":
        tracemalloc.start(1)
        _state["snap"] = tracemalloc.take_snapshot()
        return web.json_response({"tracing": True})
    gc.collect()
    diff = tracemalloc.take_snapshot().compare_to(_state["snap"], "lineno")
    top = [{"where": str(d.traceback[0]), "kb": d.size_diff / 1024, "count": d.count_diff} for d in diff[:15]]
    total = sum(d.size_diff for d in diff) / 2**20
    return web.json_response({"grown_mb": total, "top": top})


@routes.post("/pc_probe/identity")
async def identity(request):
    from pathlib import Path

    body = await request.json()
    mem, path, n = _module("nodes.memory", "_identity"), Path(body["path"]), int(body.get("repeat", 200))
    t = time.perf_counter()
    for _ in range(n):
        ident = mem._identity(path)
    per = (time.perf_counter() - t) / n
    return web.json_response({"files": len(ident), "ms_per_call": per * 1e3})


@routes.post("/pc_probe/t5time")
async def t5time(request):
    body = await request.json()
    mem = _module("nodes.memory", "_LOADED")
    encoders = [h.model for h in list(mem._LOADED.values()) if hasattr(h.model, "encode")]
    if not encoders:
        return web.json_response({"error": "no T5 loaded"}, status=409)
    enc, text, n = encoders[0], body.get("text", "a probe prompt"), int(body.get("repeat", 20))
    enc.encode([text])  # make sure it is cached

    def timed(**kw) -> float:
        t = time.perf_counter()
        for _ in range(n):
            enc.encode([text], **kw)
            enc.filler() if kw.get("use_cache", True) else enc._filler(False)
        return (time.perf_counter() - t) / n * 1e3

    return web.json_response({"hit_ms": timed(), "miss_ms": timed(use_cache=False), "d_model": enc.hidden_size,
                              "layers": enc.model.config.num_layers})
