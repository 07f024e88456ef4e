"""``python -m cascade_core.train CONFIG.json [--steps N] [--output-dir D] [--fresh]``: train one model.

The config's ``kind`` picks the trainer: ``unet`` (a cascade stage, :mod:`.unet_trainer`; default), ``t5``
(the demo text encoder, span corruption), ``git`` (the demo captioner) or ``clip`` (the demo embedder).
A run resumes from ``<output_dir>/resume`` when it exists unless ``--fresh``. For several GPUs or machines,
launch the same command through torchrun: ``torchrun --nproc_per_node=8 -m cascade_core.train CONFIG.json``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# kind -> (module, config class); each module has run(config) -> Path
TRAINERS: dict[str, tuple[str, str]] = {
    "unet": ("cascade_core.train.unet_trainer", "UNetTrainConfig"),
    "t5": ("cascade_core.train.t5_pretrain", "T5PretrainConfig"),
    "git": ("cascade_core.train.git_train", "GitTrainConfig"),
    "clip": ("cascade_core.train.clip_train", "ClipTrainConfig"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascade_core.train", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="training config JSON (see cascade_core/demo/configs/)")
    parser.add_argument("--steps", type=int, help="override the config's number of steps")
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing resume state (UNet stages)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from .config import UNetTrainConfig, read_config_file

    try:
        kind, values = read_config_file(args.config)
        if kind not in TRAINERS:
            raise ValueError(f"{args.config}: unknown kind {kind!r} (known: {sorted(TRAINERS)})")
        if args.steps is not None:
            values["steps"] = args.steps
        if args.output_dir is not None:
            values["output_dir"] = args.output_dir
        module_name, class_name = TRAINERS[kind]
        module = importlib.import_module(module_name)
        if kind == "unet":
            out = module.run(UNetTrainConfig.from_dict(values), resume=not args.fresh)
        else:
            out = module.run(getattr(module, class_name)(**values))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)  # noqa: T201 (a command-line tool's message)
        return 2
    print(f"trained model written to {out}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
