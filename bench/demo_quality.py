"""Quality of the demo cascade on held-out prompts, judged by the procedural oracle (issue 9, part 5).

Run: ``python bench/demo_quality.py [--prompts 48] [--seeds 3] [--steps S] [--quick]`` -> prints a table and
writes bench/results/demo_quality.json with the keys

  color_acc shape_acc position_acc size_acc            the 64 px output, oracle verdict per attribute (0..1)
  color_acc_1024 ... size_acc_1024                     the 1024 px output, downsampled to 64 (antialiased)
  sr256_gain_db sr1024_gain_db                         SR stages run on TRUE low-res renders: PSNR(output, truth)
                                                       minus PSNR(bicubic, truth), dB (> 0: better than bicubic)
  caption_acc                                          GIT's caption of a held-out render names its colour and shape
  retrieval_top1                                       CLIP ranks the true caption of a held-out render above 8
                                                       captions that each differ from it in one attribute
  no_cfg                                               {color_acc, shape_acc, position_acc, size_acc} at guidance 1
  machine seconds counts skipped settings              where/how long; images judged per metric; why a metric is
                                                       null; the run's arguments

A metric whose models are missing (or whose function the demo module lacks) is null, with the reason under
"skipped", so the bench runs before the demo models exist.

The demo module ``cascade_core.demo`` (imported lazily) must provide:
  DEMO_DIR                                              the model folder (t5/ base64/ sr256/ sr1024/ git/ clip/)
  generate(prompts, seed=0, guidance=None, steps=None, device=None) -> {64: [B,64,64,3], 256: [B,256,256,3],
                                                        1024: [B,1024,1024,3]} float tensors in 0..1
  upscale(images, prompts, stage, seed=0) -> [B, 4H, 4W, 3]   one SR stage (stage 256: 64 -> 256, stage 1024:
                                                        256 -> 1024) on given low-res images [B, H, W, 3] in 0..1
The bench calls the SR stages through ``upsample256(images64, prompts, seed)`` and
``upsample1024(images256, prompts, seed)`` below, which forward to ``upscale``.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import re
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cascade_core.demo.oracle import judge, resize_images, sr_gain_db  # noqa: E402
from cascade_core.train.shapes import (  # noqa: E402
    BACKGROUNDS, COLORS, HELD_OUT, NUM_PHRASINGS, POSITIONS, SHAPES, SIZES, Scene, caption, contrasts, random_scene,
    render,
)

KEYS = ("color", "shape", "position", "size")
OUT = ROOT / "bench" / "results" / "demo_quality.json"
Generate = Callable[..., dict]


# ------------------------------------------------------------------------------------------- the demo module

def demo_module():
    """``cascade_core.demo``, imported on first use (the real generate/upscale live there)."""
    import cascade_core.demo as demo

    return demo


def demo_dir() -> Path:
    demo = demo_module()
    return Path(demo.DEMO_DIR) if hasattr(demo, "DEMO_DIR") else Path(demo.__file__).parent / "models"


def upsample256(images64: torch.Tensor, prompts: list[str], seed: int) -> torch.Tensor:
    """Stage II of the demo on given 64 px images [B, 64, 64, 3] -> [B, 256, 256, 3]."""
    return demo_module().upscale(images64, prompts, 256, seed=seed)


def upsample1024(images256: torch.Tensor, prompts: list[str], seed: int) -> torch.Tensor:
    """Stage III of the demo on given 256 px images [B, 256, 256, 3] -> [B, 1024, 1024, 3]."""
    return demo_module().upscale(images256, prompts, 1024, seed=seed)


class Skip(Exception):
    """A section cannot run; the message says why (its metrics become null)."""


def need_folders(root: Path, *names: str) -> None:
    missing = [n for n in names if not (root / n).is_dir()]
    if missing:
        raise Skip(f"demo model folder(s) {', '.join(missing)} missing under {root}")


# ------------------------------------------------------------------------------------------- prompts

def heldout_scenes(n: int) -> list[Scene]:
    """``n`` distinct held-out scenes, round-robin over the HELD_OUT combos (deterministic)."""
    per_combo = -(-n // len(HELD_OUT))
    count: dict[tuple[str, str, str], int] = {}
    scenes: list[Scene] = []
    seed = 0
    while len(scenes) < n:
        s = random_scene(seed, "heldout")
        combo = (s.color, s.shape, s.position)
        if count.get(combo, 0) < per_combo and s not in scenes:
            count[combo] = count.get(combo, 0) + 1
            scenes.append(s)
        seed += 1
    return scenes


def prompts_of(scenes: list[Scene]) -> list[str]:
    return [caption(s, i % NUM_PHRASINGS) for i, s in enumerate(scenes)]


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def attribute_scores(images: torch.Tensor, scenes: list[Scene]) -> dict[str, int]:
    """Number of images [B, H, W, 3] whose oracle verdict matches each attribute."""
    hits = {k: 0 for k in KEYS}
    for img, scene in zip(images, scenes):
        for key, ok in judge(img, scene).items():
            hits[key] += int(ok)
    return hits


# ------------------------------------------------------------------------------------------- sections

def section_generation(generate: Generate, scenes: list[Scene], seeds: int, steps: int | None, guidance: float | None,
                       batch: int, device: str | None, with_1024: bool = True) -> dict[str, tuple[int, int]]:
    """(hits, n) per metric: the 64 px outputs and the 1024 px outputs downsampled to 64."""
    prompts = prompts_of(scenes)
    hits64, hits1024, n = dict.fromkeys(KEYS, 0), dict.fromkeys(KEYS, 0), 0
    for seed in range(seeds):
        for idx in chunks(list(range(len(scenes))), batch):
            out = generate([prompts[i] for i in idx], seed=seed, guidance=guidance, steps=steps, device=device)
            part = [scenes[i] for i in idx]
            for k, v in attribute_scores(out[64].float().cpu(), part).items():
                hits64[k] += v
            if with_1024:
                small = resize_images(out[1024].float().cpu(), 64)
                for k, v in attribute_scores(small, part).items():
                    hits1024[k] += v
            n += len(idx)
    result = {f"{k}_acc": (hits64[k], n) for k in KEYS}
    if with_1024:
        result.update({f"{k}_acc_1024": (hits1024[k], n) for k in KEYS})
    return result


def section_sr(up256: Callable, up1024: Callable, scenes: list[Scene], seeds: int, batch: int) -> dict[str, tuple]:
    """(summed gain dB, n) of both SR stages run on true low-res renders."""
    prompts = prompts_of(scenes)
    gains = {"sr256_gain_db": [0.0, 0], "sr1024_gain_db": [0.0, 0]}
    for seed in range(seeds):
        for idx in chunks(list(range(len(scenes))), batch):
            part, text = [scenes[i] for i in idx], [prompts[i] for i in idx]
            truth = {r: torch.stack([render(s, r) for s in part]).permute(0, 2, 3, 1) for r in (64, 256, 1024)}
            out = up256(truth[64], text, seed).float().cpu()
            gains["sr256_gain_db"][0] += sr_gain_db(out, truth[256], truth[64]) * len(idx)
            gains["sr256_gain_db"][1] += len(idx)
            out = up1024(truth[256], text, seed).float().cpu()
            gains["sr1024_gain_db"][0] += sr_gain_db(out, truth[1024], truth[256]) * len(idx)
            gains["sr1024_gain_db"][1] += len(idx)
    return {k: (v[0], v[1]) for k, v in gains.items()}


def names_color_and_shape(text: str, scene: Scene) -> bool:
    """Whether ``text`` names the scene's shape with its colour as the nearest colour word before it."""
    words = re.findall(r"[a-z]+", text.lower())
    for i, w in enumerate(words):
        if w in SHAPES or w.rstrip("s") in SHAPES:
            before = [x for x in words[max(0, i - 3):i] if x in COLORS]
            return (w if w in SHAPES else w.rstrip("s")) == scene.shape and bool(before) and before[-1] == scene.color
    return False


def section_caption(folder: Path, scenes: list[Scene], device: str | None, batch: int) -> dict[str, tuple]:
    from cascade_core import load_captioner

    captioner = load_captioner(folder, device=device)
    hits = 0
    for part in chunks(scenes, batch):
        images = torch.stack([render(s, 256) for s in part]).permute(0, 2, 3, 1)
        hits += sum(names_color_and_shape(t, s) for t, s in zip(captioner.caption(images), part))
    return {"caption_acc": (hits, len(scenes))}


def distractors(scene: Scene, index: int) -> list[Scene]:
    """8 scenes that each differ from ``scene`` in one attribute: 2 colours, 2 shapes, 2 positions, the other size
    and another background (always a valid scene: the background contrasts with the colour)."""
    rng = random.Random(f"distractors-{index}")
    colors = [c for c in COLORS if c != scene.color and contrasts(c, scene.background)
              and c not in (scene.outline, scene.stripes)]
    out = [Scene(c, scene.shape, scene.size, scene.position, scene.background, scene.outline, scene.stripes)
           for c in rng.sample(colors, 2)]
    out += [Scene(scene.color, s, scene.size, scene.position, scene.background, scene.outline, scene.stripes)
            for s in rng.sample([s for s in SHAPES if s != scene.shape], 2)]
    out += [Scene(scene.color, scene.shape, scene.size, p, scene.background, scene.outline, scene.stripes)
            for p in rng.sample([p for p in POSITIONS if p != scene.position], 2)]
    out.append(Scene(scene.color, scene.shape, next(s for s in SIZES if s != scene.size), scene.position,
                     scene.background, scene.outline, scene.stripes))
    backgrounds = [b for b in BACKGROUNDS if b != scene.background and contrasts(scene.color, b)
                   and COLORS.get(scene.outline or scene.stripes or "", None) != BACKGROUNDS[b]]
    out.append(Scene(scene.color, scene.shape, scene.size, scene.position, rng.choice(backgrounds), scene.outline,
                     scene.stripes))
    return out


def section_retrieval(folder: Path, scenes: list[Scene], device: str | None, batch: int) -> dict[str, tuple]:
    from cascade_core import load_embedder

    embedder = load_embedder(folder, device=device)
    hits = 0
    for start in range(0, len(scenes), batch):
        part = scenes[start:start + batch]
        images = torch.stack([render(s, 256) for s in part]).permute(0, 2, 3, 1)
        image_embeds = embedder.embed_images(images)
        for j, scene in enumerate(part):
            texts = [caption(scene)] + [caption(d) for d in distractors(scene, start + j)]
            scores = embedder.scores(image_embeds[j:j + 1], embedder.embed_texts(texts))[0]
            hits += int(scores[0] > scores[1:].max())
    return {"retrieval_top1": (hits, len(scenes))}


# ------------------------------------------------------------------------------------------- the run

GOALS = {"color_acc": ">= 0.90", "shape_acc": ">= 0.80", "position_acc": ">= 0.80", "size_acc": ">= 0.80",
         "sr256_gain_db": "> 0", "sr1024_gain_db": "> 0", "caption_acc": ">= 0.90", "retrieval_top1": ">= 0.90"}
GOALS.update({f"{k}_acc_1024": f">= {k}_acc - 0.03" for k in KEYS})
METRICS = ([f"{k}_acc" for k in KEYS] + [f"{k}_acc_1024" for k in KEYS]
           + ["sr256_gain_db", "sr1024_gain_db", "caption_acc", "retrieval_top1", "no_cfg"])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} CPU threads{gpu}, {platform.system()}, torch {torch.__version__}"


def _demo_function(name: str, root: Path, folders: tuple[str, ...]) -> Callable:
    need_folders(root, *folders)
    try:
        return getattr(demo_module(), name)
    except (ImportError, AttributeError) as e:
        raise Skip(f"cascade_core.demo has no {name}() yet ({e})") from e


def run(*, generate: Generate | None = None, up256: Callable | None = None, up1024: Callable | None = None,
        prompts: int = 48, seeds: int = 3, steps: int | None = None, batch: int = 16, device: str | None = None,
        root: Path | None = None, prompts_1024: int = 16) -> dict:
    """Run every section (those that cannot run give null + a reason) -> the results dict."""
    t0 = time.perf_counter()
    root = Path(root) if root is not None else demo_dir()
    scenes = heldout_scenes(prompts)
    values: dict[str, object] = dict.fromkeys(METRICS)
    counts: dict[str, int] = {}
    skipped: dict[str, str] = {}
    g_folders = ("t5", "base64", "sr256", "sr1024")

    def section(metrics: list[str], fn: Callable[[], dict[str, tuple]]) -> None:
        try:
            for key, (total, n) in fn().items():
                values[key], counts[key] = (total / n if n else None), n
        except Skip as e:
            for key in metrics:
                skipped[key] = str(e)

    def gen_fn() -> Generate:
        return generate if generate is not None else _demo_function("generate", root, g_folders)

    def gen64_fn() -> Generate:
        if generate is not None:
            return generate
        fn = _demo_function("generate", root, g_folders)
        if getattr(demo_module(), "__name__", "") != "cascade_core.demo":
            return fn  # a stand-in module (tests): its generate as it is
        from cascade_core.demo.pipeline import generate as pipeline_generate

        return functools.partial(pipeline_generate, up_to=64)

    # the 64 px scores on every prompt and seed; the 1024 px scores (a whole cascade each) on a subset
    section(METRICS[:4], lambda: section_generation(gen64_fn(), scenes, seeds, steps, None, batch, device,
                                                    with_1024=False))
    sub = scenes[:prompts_1024]
    section(METRICS[4:8], lambda: {k: v for k, v in section_generation(gen_fn(), sub, 1, steps, None, batch,
                                                                        device).items() if k.endswith("_1024")})

    def sr() -> dict[str, tuple]:
        if up256 is None or up1024 is None:
            _demo_function("upscale", root, ("t5", "sr256", "sr1024"))
        return section_sr(up256 or upsample256, up1024 or upsample1024, scenes[:prompts_1024], 1, batch)

    section(["sr256_gain_db", "sr1024_gain_db"], sr)

    def caption_section() -> dict[str, tuple]:
        need_folders(root, "git")
        return section_caption(root / "git", scenes, device, batch)

    def retrieval_section() -> dict[str, tuple]:
        need_folders(root, "clip")
        return section_retrieval(root / "clip", scenes, device, batch)

    section(["caption_acc"], caption_section)
    section(["retrieval_top1"], retrieval_section)

    def no_cfg() -> dict[str, tuple]:
        scores = section_generation(gen64_fn(), scenes, seeds, steps, 1.0, batch, device, with_1024=False)
        values["no_cfg"] = {k: hits / n for k, (hits, n) in scores.items()}
        return {}

    section(["no_cfg"], no_cfg)
    if values["no_cfg"] is not None:
        counts["no_cfg"] = len(scenes) * seeds
    settings = {"prompts": prompts, "seeds": seeds, "prompts_1024": prompts_1024, "steps": steps, "batch": batch,
                "device": device,
                "demo_dir": str(root)}
    return {**values, "machine": machine(), "seconds": round(time.perf_counter() - t0, 2), "counts": counts,
            "skipped": skipped, "settings": settings}


def table(result: dict) -> str:
    rows = [f"{'metric':<18} {'value':>8} {'n':>5}  goal / note"]
    for key in METRICS:
        value = result[key]
        if key == "no_cfg" and value is not None:
            base = {k: result.get(k) for k in value}
            text = ", ".join(f"{k} {v:.3f}" + (f" (cfg {base[k]:.3f})" if base[k] is not None else "")
                             for k, v in value.items())
            rows.append(f"{key:<18} {'':>8} {result['counts'].get(key, 0):>5}  {text}")
            continue
        shown = "null" if value is None else f"{value:.3f}"
        note = result["skipped"].get(key) or GOALS.get(key, "")
        rows.append(f"{key:<18} {shown:>8} {result['counts'].get(key, 0):>5}  {note}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=None, help="held-out prompts (default 48; --quick: 8)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per prompt (default 3; --quick: 1)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps of every stage (default: the demo's)")
    p.add_argument("--quick", action="store_true", help="a fast smoke run: 8 prompts, 1 seed")
    p.add_argument("--prompts-1024", type=int, default=None,
                   help="prompts (1 seed) for the 1024 px scores and the SR gains, each a whole cascade (default 16; "
                        "--quick: 4)")
    p.add_argument("--batch", type=int, default=16, help="prompts per generate call")
    p.add_argument("--device", default=None, help="torch device for the models (default: the demo's choice)")
    p.add_argument("--demo-dir", type=Path, default=None, help="demo model folder (default cascade_core.demo.DEMO_DIR)")
    p.add_argument("--out", type=Path, default=OUT, help=f"results JSON (default {OUT.relative_to(ROOT)})")
    args = p.parse_args(argv)
    prompts = args.prompts if args.prompts is not None else (8 if args.quick else 48)
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    p1024 = args.prompts_1024 if args.prompts_1024 is not None else (4 if args.quick else 16)
    result = run(prompts=prompts, seeds=seeds, steps=args.steps, batch=args.batch, device=args.device,
                 root=args.demo_dir, prompts_1024=min(p1024, prompts))
    print(table(result))
    print(f"{result['seconds']} s on {result['machine']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
