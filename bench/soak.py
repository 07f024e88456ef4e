"""Soak and fault runs of Pixel Cascade inside a real ComfyUI server (issue 11, items 3 and 4).

    python bench/soak.py                       # 200 prompts, 50 interrupts, 3 kills: bench/results/soak.json
    python bench/soak.py --prompts 20 --interrupts 5 --kills 1 --out /tmp/soak.json   # short (the slow test)

It starts its own ComfyUI (``scripts/comfyui.sh``, 127.0.0.1, a free port, ``--cpu``) on a temporary base
directory with the micro checkpoints of ``tests/server/_checkpoints.py`` and a measuring probe
(``bench/soak_probe.py``, copied into that base's ``custom_nodes``; never into the pack), then runs:

1. **soak**: ``--prompts`` queued runs of the shipped 64→256 cascade (``workflows/api/cascade_64_256.json`` on the
   micro models, ``--steps`` per stage) with seeded random seeds, prompts (from a pool of ``--texts``, so texts
   repeat across graphs) and base sizes; the server's VmRSS after each; probe snapshots after warm-up and at the
   end (what holds memory: tensors, caches, history, glibc arenas), then ``malloc_trim(0)``;
2. **hygiene**: T5 Encode's cost with and without the embedding cache (on the loaded T5) and the cost of
   ``nodes.memory._identity`` on the micro repo and on a synthetic IF-like repo folder;
3. **interrupts**: ``--interrupts`` runs interrupted at a random point (sampler step, node start or a delay),
   each followed by a run that must succeed and equal, pixel for pixel, an uninterrupted run with its seed;
4. **kills**: ``--kills`` runs where the server gets SIGKILL at a random point, is restarted on the same base
   directory and must run again; at the end every PNG in ``output/`` decodes and every model file is unchanged.

Prints a table and writes ``--out`` (JSON) after each part, so an interrupted run keeps what it measured.
"""
from __future__ import annotations

import argparse
import io
import json
import random
import tempfile
import threading
import time
from pathlib import Path

from soak_server import REPO, SoakServer, comfyui_dir, file_hashes

from _workflows import API_DIR, for_tests, load  # noqa: E402  (put on sys.path by soak_server)

SUBJECTS = ["a red fox", "an old lighthouse", "a bowl of ramen", "a vintage car", "a snowy mountain", "a koi pond",
            "a robot", "a sunflower field", "a city at night", "a wooden cabin", "a hot air balloon", "a cat"]
STYLES = ["watercolor", "oil painting", "photograph, golden hour", "pixel art", "ink sketch", "3d render"]
SIZES = [32, 40, 48, 56, 64]


def cascade(text: str, seed: int, width: int = 64, height: int = 64, steps: int = 4, prefix: str = "soak") -> dict:
    """The shipped 64→256 cascade on the micro models (nodes: 2 positive, 6 base sampler, 10 SR, 11 save)."""
    g = for_tests(load(API_DIR / "cascade_64_256.json"), steps=steps, prefix=prefix)
    g["2"]["inputs"]["text"] = text
    g["6"]["inputs"].update(seed=seed, width=width, height=height)
    g["10"]["inputs"]["seed"] = seed
    return g


def pixels(server: SoakServer, run) -> bytes:
    """Decoded RGB bytes of the run's saved 256 px image (fetched through /view)."""
    from PIL import Image

    img = run.history["outputs"]["11"]["images"][0]
    status, data = server.client.request(
        "GET", f"/view?filename={img['filename']}&subfolder={img['subfolder']}&type={img['type']}")
    assert status == 200, f"/view -> {status}"
    return Image.open(io.BytesIO(data)).convert("RGB").tobytes()


def cached_nodes(run) -> set[str]:
    return {n for d in run.of_type("execution_cached") for n in d.get("nodes", [])}


def soak(server: SoakServer, args, rng: random.Random) -> dict:
    texts = [f"{rng.choice(SUBJECTS)}, {rng.choice(STYLES)}" for _ in range(args.texts)]
    rss, failures, t5_runs, seconds, live, trim_ms = [], [], 0, [], [], []
    warm = max(1, args.prompts // 10)
    snaps = {"start": server.probe("stats")}
    for i in range(args.prompts):
        if i == warm:
            snaps["warm"] = server.probe("stats")
            if args.tracemalloc:
                server.probe("tracemalloc", {"action": "start"})
        g = cascade(rng.choice(texts), rng.randrange(2**31), rng.choice(SIZES), rng.choice(SIZES), args.steps)
        t = time.monotonic()
        run = server.client.run(g, timeout=300)
        seconds.append(time.monotonic() - t)
        if run.status != "success":
            failures.append({"i": i, "status": run.status, "error": run.of_type("execution_error")[:1]})
        t5_runs += "2" not in cached_nodes(run)
        if args.trim_each:
            trim_ms.append(server.probe("trim", {})["trim_ms"])
        rss.append(round(server.rss_mb(), 1))
        if i % 10 == 9:
            st = server.probe("stats")
            live.append({"i": i + 1, "rss_mb": round(st["rss_mb"], 1), "malloc_in_use_mb": round(
                st["malloc"].get("in_use_mb", 0), 1), "malloc_free_mb": round(st["malloc"].get("free_in_arenas_mb", 0),
                1), "tensor_mb": round(st["tensors"]["storage_mb"], 2), "gc_objects": st["gc_objects"]})
    snaps["end"] = server.probe("stats")
    out = {"prompts": args.prompts, "steps": args.steps, "texts": args.texts, "warmup": warm, "failures": failures,
           "rss_mb_every_10": rss[::10] + [rss[-1]], "rss_mb_start": rss[0], "rss_mb_after_warmup": rss[warm - 1],
           "rss_mb_end": rss[-1], "rss_mb_max": max(rss),
           "growth_pct_after_warmup": round(100 * (rss[-1] - rss[warm - 1]) / rss[warm - 1], 2),
           "growth_pct_from": {k: round(100 * (rss[-1] - rss[k - 1]) / rss[k - 1], 2)
                               for k in (10, 20, 50, 100) if k < len(rss)}, "rss_mb": rss,
           "seconds_per_prompt_median": round(sorted(seconds)[len(seconds) // 2], 2),
           "live_every_10": live,
           "trim_ms_median": sorted(trim_ms)[len(trim_ms) // 2] if trim_ms else None,
           "t5_encode_executed": t5_runs, "t5_encode_cached_by_comfyui": args.prompts - t5_runs, "probe": snaps}
    if args.tracemalloc:
        out["tracemalloc"] = server.probe("tracemalloc", {"action": "diff"})
    out["malloc_trim"] = server.probe("trim", {})
    return out


def big(server: SoakServer, args) -> dict:
    """Large transient images (like the bad-input corpus' 4000x4000 cases): ComfyUI's EmptyImage -> PreviewImage.
    RSS before, after, and after ``malloc_trim``: what the allocator keeps once the tensors are gone."""
    before = server.rss_mb()
    sizes = [2048 + 256 * k for k in range(args.big)]
    for n in sizes:
        g = {"1": {"class_type": "EmptyImage", "inputs": {"width": n, "height": n, "batch_size": 1, "color": n}},
             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
        run = server.client.run(g, timeout=300)
        assert run.status == "success", run.of_type("execution_error")
    after = server.rss_mb()
    return {"sizes": sizes, "rss_mb_before": round(before, 1), "rss_mb_after": round(after, 1),
            "stats_after": server.probe("stats"), "malloc_trim": server.probe("trim", {})}


def hygiene(server: SoakServer, args) -> dict:
    """T5 Encode with / without the embedding cache; ``_identity`` on the micro repo and on an IF-like folder."""
    run = server.client.run(cascade("a red fox, watercolor", 1, steps=args.steps), timeout=300)  # T5 loaded
    assert run.status == "success", run.of_type("execution_error")
    out = {"t5": server.probe("t5time", {"text": "a red fox, watercolor", "repeat": 20})}
    micro = server.base / "models" / "pixel_cascade" / "tiny-IF-I"
    out["identity_micro_repo"] = server.probe("identity", {"path": str(micro), "repeat": 500})
    fake = server.work / "if_like_repo"  # IF-I-XL-v1.0's layout: ~40 files in 7 folders (empty files: stat only)
    for folder, n in (("unet", 6), ("text_encoder", 8), ("tokenizer", 4), ("scheduler", 1), ("safety_checker", 6),
                      ("feature_extractor", 1), ("watermarker", 2), ("", 12)):
        (fake / folder).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            (fake / folder / f"file_{k}.bin").write_bytes(b"")
    out["identity_if_like_repo"] = server.probe("identity", {"path": str(fake), "repeat": 500})
    return out


def interrupt_run(server: SoakServer, g: dict, trigger: tuple) -> str:
    """Run ``g``, POST /interrupt at ``trigger``; return the run's status ('error' = interrupted)."""
    fired = []

    def fire():
        if not fired:
            fired.append(time.monotonic())
            server.client.request("POST", "/interrupt", {})

    def on_message(_, run, kind, data):
        if trigger[0] == "delay" and kind == "execution_start":
            threading.Timer(trigger[1], fire).start()
        elif trigger[0] == "executing" and kind == "executing" and data.get("node") == trigger[1]:
            fire()
        elif trigger[0] == "progress" and kind == "progress" and data.get("node") == trigger[1] \
                and data.get("value", 0) >= trigger[2]:
            fire()

    run = server.client.run(g, timeout=300, on_message=on_message)
    return "interrupted" if run.of_type("execution_interrupted") else run.status


def random_trigger(rng: random.Random, steps: int) -> tuple:
    kind = rng.choice(["progress", "progress", "executing", "delay"])
    if kind == "progress":
        return ("progress", rng.choice(["6", "10"]), rng.randint(1, steps))
    if kind == "executing":
        return ("executing", rng.choice(["2", "4", "5", "6", "8", "10", "11"]))
    return ("delay", round(rng.uniform(0, 1.5), 3))


def interrupts(server: SoakServer, args, rng: random.Random) -> dict:
    pool = [(f"{SUBJECTS[k]}, {STYLES[k]}", 1000 + k) for k in range(4)]
    refs = {}
    for text, seed in pool:
        run = server.client.run(cascade(text, seed, steps=args.steps, prefix="soak/ref"), timeout=300)
        assert run.status == "success", run.of_type("execution_error")
        refs[seed] = pixels(server, run)
    outcomes, bad = {}, []
    for i in range(args.interrupts):
        trigger = random_trigger(rng, args.steps)
        g = cascade(rng.choice(pool)[0], 50_000 + i, steps=args.steps, prefix="soak/int")
        status = interrupt_run(server, g, trigger)
        outcomes[status] = outcomes.get(status, 0) + 1
        text, seed = pool[i % len(pool)]
        after = server.client.run(cascade(text, seed, steps=args.steps, prefix="soak/after"), timeout=300)
        same = after.status == "success" and pixels(server, after) == refs[seed]
        reran = not ({"6", "10"} & cached_nodes(after))
        if not (same and reran):
            bad.append({"i": i, "trigger": trigger, "status": after.status, "same_pixels": same, "reran": reran})
    return {"interrupts": args.interrupts, "outcomes": outcomes, "next_run_ok_and_bit_identical":
            args.interrupts - len(bad), "bad": bad}


def kills(server: SoakServer, args, rng: random.Random) -> dict:
    models = server.base / "models"
    before = file_hashes(models)
    records = []
    for i in range(args.kills):
        trigger = random_trigger(rng, args.steps * 4)
        g = cascade(f"kill run {i}", 70_000 + i, steps=args.steps * 4, prefix="soak/kill")
        killed = []

        def on_message(_, run, kind, data, trigger=trigger, killed=killed):
            hit = (trigger[0] == "executing" and kind == "executing" and data.get("node") == trigger[1]) or \
                  (trigger[0] == "progress" and kind == "progress" and data.get("node") == trigger[1]
                   and data.get("value", 0) >= trigger[2]) or (trigger[0] == "delay" and kind == "execution_start")
            if hit and not killed:
                if trigger[0] == "delay":
                    time.sleep(trigger[1])
                killed.append(trigger)
                server.kill9()

        try:
            run = server.client.run(g, timeout=300, on_message=on_message)
            ended = run.status
        except Exception as e:  # the websocket or HTTP dies with the server
            ended = f"connection lost ({type(e).__name__})"
        if not killed:  # finished before the trigger: kill it now, idle
            server.kill9()
        restart_s = server.start()
        after = server.client.run(cascade("after a kill", 90_000 + i, steps=args.steps, prefix="soak/after_kill"))
        records.append({"trigger": trigger, "killed_mid_run": bool(killed), "run_ended": ended,
                        "restart_s": round(restart_s, 1), "next_run": after.status})
    bad_png = []
    from PIL import Image

    output = server.base / "output"
    pngs = sorted(output.rglob("*.png"))
    for p in pngs:
        try:
            with Image.open(p) as im:
                im.load()
        except Exception as e:
            bad_png.append(f"{p.relative_to(output)}: {e}")
    others = [str(p.relative_to(output)) for p in output.rglob("*") if p.is_file() and p.suffix != ".png"]
    after_hashes = file_hashes(models)
    changed = sorted(k for k in set(before) | set(after_hashes) if before.get(k) != after_hashes.get(k))
    return {"kills": args.kills, "records": records, "survived": sum(r["next_run"] == "success" for r in records),
            "output_pngs": len(pngs), "undecodable_pngs": bad_png, "non_png_outputs": others,
            "model_files": len(before), "model_files_changed": changed}


def table(result: dict) -> str:
    rows = []
    if "soak" in result:
        s = result["soak"]
        rows += [("soak prompts / failures", f"{s['prompts']} / {len(s['failures'])}"),
                 ("RSS MiB start / after warm-up / end / max",
                  f"{s['rss_mb_start']} / {s['rss_mb_after_warmup']} / {s['rss_mb_end']} / {s['rss_mb_max']}"),
                 ("RSS growth after warm-up", f"{s['growth_pct_after_warmup']} %"),
                 ("RSS curve (every 10th)", " ".join(f"{v:.0f}" for v in s["rss_mb_every_10"])),
                 ("malloc_trim RSS before -> after",
                  f"{s['malloc_trim']['rss_before_mb']:.0f} -> {s['malloc_trim']['rss_after_mb']:.0f} MiB"),
                 ("T5 Encode executed / cached by ComfyUI",
                  f"{s['t5_encode_executed']} / {s['t5_encode_cached_by_comfyui']}")]
    if "big" in result:
        b = result["big"]
        rows += [("big images: RSS before / after / trimmed", f"{b['rss_mb_before']:.0f} / {b['rss_mb_after']:.0f} / "
                                                             f"{b['malloc_trim']['rss_after_mb']:.0f} MiB")]
    if "hygiene" in result:
        h = result["hygiene"]
        rows += [("T5 encode hit / miss ms", f"{h['t5']['hit_ms']:.2f} / {h['t5']['miss_ms']:.2f}"),
                 ("_identity ms (micro / IF-like)", f"{h['identity_micro_repo']['ms_per_call']:.3f} / "
                                                    f"{h['identity_if_like_repo']['ms_per_call']:.3f}")]
    if "interrupts" in result:
        r = result["interrupts"]
        rows += [("interrupts: next run identical", f"{r['next_run_ok_and_bit_identical']} / {r['interrupts']}"),
                 ("interrupt outcomes", json.dumps(r["outcomes"]))]
    if "kills" in result:
        k = result["kills"]
        rows += [("kills survived", f"{k['survived']} / {k['kills']}"),
                 ("PNGs / undecodable", f"{k['output_pngs']} / {len(k['undecodable_pngs'])}"),
                 ("model files changed", f"{len(k['model_files_changed'])} of {k['model_files']}")]
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=200)
    p.add_argument("--interrupts", type=int, default=50)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--steps", type=int, default=4, help="sampling steps per stage (kill runs use 4x)")
    p.add_argument("--big", type=int, default=5, help="large-image prompts after the soak (2048 px and up)")
    p.add_argument("--texts", type=int, default=20, help="distinct prompts the soak draws from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tracemalloc", action="store_true", help="trace Python allocations after warm-up (slower)")
    p.add_argument("--malloc-arena-max", type=int, default=None, help="MALLOC_ARENA_MAX for the server")
    p.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the server, e.g. MALLOC_MMAP_THRESHOLD_=131072 (repeatable)")
    p.add_argument("--trim-each", action="store_true", help="malloc_trim(0) in the server after every prompt")
    p.add_argument("--no-embedding-cache", action="store_true", help="disable the pack's EmbeddingCache")
    p.add_argument("--comfyui-dir", default=None)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.json")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    env = {"MALLOC_ARENA_MAX": str(args.malloc_arena_max)} if args.malloc_arena_max else {}
    env.update(kv.split("=", 1) for kv in args.server_env)
    result: dict = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}

    def save():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pc_soak_") as tmp:
        server = SoakServer(Path(tmp), comfyui_dir(args.comfyui_dir), env)
        server.prepare()
        result["config"]["start_s"] = round(server.start(), 1)
        try:
            if args.no_embedding_cache:
                server.probe("cache", {"max_entries": 0})
            for name, part in (("soak", lambda: soak(server, args, rng)), ("big", lambda: big(server, args)),
                               ("hygiene", lambda: hygiene(server, args)),
                               ("interrupts", lambda: interrupts(server, args, rng)),
                               ("kills", lambda: kills(server, args, rng))):
                if not {"soak": args.prompts, "big": args.big, "interrupts": args.interrupts,
                        "kills": args.kills}.get(name, 1):
                    continue
                t = time.monotonic()
                result[name] = part()
                result[name]["seconds"] = round(time.monotonic() - t, 1)
                save()
                print(f"[soak] {name} done in {result[name]['seconds']} s", flush=True)
        finally:
            server.stop()
    result["total_seconds"] = round(time.monotonic() - t0, 1)
    save()
    print(table(result))
    return result


if __name__ == "__main__":
    main()
