"""What one T5-XXL encode of a 77-token prompt costs on this CPU: what an ``EmbeddingCache`` miss costs with the
T5 Loader on ``device=cpu`` (the low-VRAM setup). Random weights, ``--layers`` of the 24 built (default 2, 1.5 GB
fp32), timed and scaled to 24 layers (the layers are identical in shape, so time is linear in their number).

    python bench/t5_cpu_cost.py [--layers 2] [--threads 2] [--out bench/results/t5_cpu_cost.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import T5Config, T5EncoderModel

XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, num_heads=64, d_ff=10240, feed_forward_proj="gated-gelu",
           is_encoder_decoder=False)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "t5_cpu_cost.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = T5EncoderModel(T5Config(num_layers=args.layers, **XXL)).eval()
    ids = torch.randint(0, 32128, (1, 77))
    rows = {}
    for dtype in (torch.float32, torch.bfloat16):
        model.to(dtype)
        with torch.inference_mode():
            model(input_ids=ids)  # warm-up
            t = time.perf_counter()
            for _ in range(args.repeat):
                model(input_ids=ids)
        per_layer = (time.perf_counter() - t) / args.repeat / args.layers
        rows[str(dtype).removeprefix("torch.")] = {"ms_per_layer": round(per_layer * 1e3, 1),
                                                   "s_per_encode_24_layers": round(per_layer * 24, 2)}
    result = {"threads": args.threads, "layers_timed": args.layers, "tokens": 77, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for k, v in rows.items():
        print(f"T5-XXL encode on CPU, {k}: {v['ms_per_layer']} ms/layer -> {v['s_per_encode_24_layers']} s per prompt")
    return result


if __name__ == "__main__":
    main()
