"""Best-of-N on the demo cascade: does letting the demo's own CLIP pick the best K of N 64 px candidates raise the
oracle's verdict over taking the first K (issue 13, item 2)?

Run: ``python bench/best_of_n.py [--prompts 24] [--n 8] [--k 1 2] [--steps S] [--threads 1]`` -> prints a table and
writes bench/results/best_of_n.json (rewritten after every batch, so a stopped run keeps what it measured).

For each held-out prompt (bench/demo_quality.py's held-out scenes) the demo's base stage draws N candidates at
64 px (one seed, one batch: different noise per candidate). Each candidate gets the oracle's score, the fraction
of the four attributes (colour, shape, position, size) it judges right, and "all4" (all four right). Per K:

  first_k        mean oracle score of candidates 0..K-1 (what a plain batch of K would give)
  mean_of_n      mean oracle score over all N (the expected value of K random picks)
  clip_best_k    mean oracle score of the K candidates the demo CLIP scores highest against the prompt
                 (cascade_core.selection.best_of_n: cosine similarity, ties to the lower index)
  oracle_best_k  the ceiling: the K candidates the oracle itself likes best
and the same for all4 and for each attribute. gain = clip_best_k - first_k; gain_se its standard error over the
prompts (paired: the same prompts and candidates on both sides).

``--resummarise`` recomputes the summary and table from an existing results file without generating anything.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.demo_quality import KEYS, heldout_scenes, machine, prompts_of  # noqa: E402
from cascade_core.demo.oracle import judge  # noqa: E402
from cascade_core.selection import best_of_n  # noqa: E402

OUT = ROOT / "bench" / "results" / "best_of_n.json"
PICKS = ("first_k", "mean_of_n", "clip_best_k", "oracle_best_k")


def verdicts(images: torch.Tensor, scene) -> list[dict[str, float]]:
    """Per image of ``images [N, 64, 64, 3]``: each attribute (0/1), ``score`` (their mean) and ``all4``."""
    out = []
    for img in images:
        v = {k: float(ok) for k, ok in judge(img, scene).items()}
        v["score"] = sum(v[k] for k in KEYS) / len(KEYS)
        v["all4"] = float(all(v[k] for k in KEYS))
        out.append(v)
    return out


def picks(per_image: list[dict], clip_order: list[int], k: int) -> dict[str, list[int]]:
    """Which candidates each rule keeps (``mean_of_n``: all of them)."""
    n = len(per_image)
    oracle_order = sorted(range(n), key=lambda i: (-per_image[i]["score"], i))
    return {"first_k": list(range(k)), "mean_of_n": list(range(n)), "clip_best_k": clip_order[:k],
            "oracle_best_k": oracle_order[:k]}


def _paired_se(records: list[dict], k: int, metric: str) -> float:
    """Standard error over prompts of the per-prompt gain (clip_best_k - first_k) of ``metric``."""
    def mean(r: dict, rule: str) -> float:
        kept = r["picks"][str(k)][rule]
        return sum(r["verdicts"][i][metric] for i in kept) / len(kept)

    gains = [mean(r, "clip_best_k") - mean(r, "first_k") for r in records]
    if len(gains) < 2:
        return float("nan")
    avg = sum(gains) / len(gains)
    return (sum((g - avg) ** 2 for g in gains) / (len(gains) - 1) / len(gains)) ** 0.5


def summarise(records: list[dict], ks: list[int]) -> dict:
    """Means over prompts of each rule's kept candidates, per K and metric."""
    metrics = ("score", "all4", *KEYS)
    result = {}
    for k in ks:
        table = {}
        for rule in PICKS:
            table[rule] = {m: sum(sum(r["verdicts"][i][m] for i in r["picks"][str(k)][rule])
                                  / len(r["picks"][str(k)][rule]) for r in records) / len(records)
                           for m in metrics}
        table["gain"] = {m: table["clip_best_k"][m] - table["first_k"][m] for m in metrics}
        table["gain_se"] = {m: _paired_se(records, k, m) for m in metrics}
        result[str(k)] = table
    return result


def table_text(summary: dict, prompts: int, n: int) -> str:
    rows = [f"{prompts} held-out prompts, N={n} candidates each at 64 px; oracle score = fraction of the 4 attributes "
            "right"]
    for k, t in summary.items():
        rows.append(f"\nK={k}  {'rule':<14} {'score':>7} {'all4':>7} " + " ".join(f"{m:>8}" for m in KEYS))
        for rule in (*PICKS, "gain", "gain_se"):
            v = t[rule]
            rows.append(f"     {rule:<14} {v['score']:>7.3f} {v['all4']:>7.3f} "
                        + " ".join(f"{v[m]:>8.3f}" for m in KEYS))
    return "\n".join(rows)


def run(prompts: int, n: int, ks: list[int], steps: int | None, seed: int, per_batch: int, out: Path,
        device: str | None) -> dict:
    from cascade_core import load_embedder
    from cascade_core.demo import DEMO_DIR
    from cascade_core.demo.pipeline import generate

    if max(ks) > n:
        raise SystemExit(f"--k {max(ks)} is more than --n {n}")
    t0 = time.perf_counter()
    scenes = heldout_scenes(prompts)
    texts = prompts_of(scenes)
    embedder = load_embedder(DEMO_DIR / "clip", device=device)
    records: list[dict] = []
    result: dict = {}
    for start in range(0, prompts, per_batch):
        idx = list(range(start, min(start + per_batch, prompts)))
        batch = [texts[i] for i in idx for _ in range(n)]
        images = generate(batch, seed=seed + start, steps=steps, device=device, up_to=64)[64].float().cpu()
        for j, i in enumerate(idx):
            group = images[j * n:(j + 1) * n]
            _, selection = best_of_n(embedder, group, [texts[i]], keep=n)
            per_image = verdicts(group, scenes[i])
            records.append({"prompt": texts[i], "verdicts": per_image, "clip_scores": selection.all_scores,
                            "picks": {str(k): picks(per_image, selection.indices, k) for k in ks}})
        summary = summarise(records, ks)
        result = {"summary": summary, "prompts_done": len(records), "prompts": prompts, "n": n, "k": ks,
                  "steps": steps, "seed": seed, "machine": machine(), "threads": torch.get_num_threads(),
                  "seconds": round(time.perf_counter() - t0, 1), "records": records}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"{len(records)}/{prompts} prompts, {result['seconds']} s", flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=24,
                   help="held-out prompts (default 24: about 18 min on 1 shared CPU thread; 12 for ~9 min)")
    p.add_argument("--n", type=int, default=8, help="candidates per prompt (default 8)")
    p.add_argument("--k", type=int, nargs="+", default=[1, 2], help="how many to keep (default 1 2)")
    p.add_argument("--steps", type=int, default=None, help="base-stage steps (default: the demo's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-batch", type=int, default=2, help="prompts per generate call (x N images)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--resummarise", action="store_true", help="only recompute the summary of --out")
    args = p.parse_args(argv)
    if args.resummarise:
        result = json.loads(args.out.read_text())
        result["summary"] = summarise(result["records"], result["k"])
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(table_text(result["summary"], result["prompts_done"], result["n"]))
        return result
    torch.set_num_threads(args.threads)
    result = run(args.prompts, args.n, args.k, args.steps, args.seed, args.per_batch, args.out, args.device)
    print(table_text(result["summary"], result["prompts_done"], args.n))
    print(f"{result['seconds']} s on {result['machine']} ({result['threads']} threads); wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
