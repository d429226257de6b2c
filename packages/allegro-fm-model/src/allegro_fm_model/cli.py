"""``allegro-fm`` command line (in progress): ``train``, ``evaluate``, ``params``.

``allegro-fm train run.toml`` reads a ``[train]`` table (keys: the fields of TrainSettings, defaults
the paper's), writes the nequip config into the run folder and trains, resuming from last.ckpt.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``allegro-fm`` command."""
    ap = argparse.ArgumentParser(prog="allegro-fm", description="Allegro-FM models: presets and training.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train (or resume) from a TOML file with a [train] table")
    p.add_argument("config")
    p.add_argument("--print-config", action="store_true", help="only write and print the generated nequip config")
    p = sub.add_parser("params", help="trainable parameters of the presets vs the paper")
    p = sub.add_parser("evaluate", help="RMSEs (meV/atom, meV/A, MPa) of a model on an aligned dataset")
    p.add_argument("model", help="checkpoint (.ckpt) or nequip package (.nequip.zip)")
    p.add_argument("dataset", help="tea-align aligned dataset (schema v1)")
    p.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "params":
            from .model import build_model, count_parameters
            from .presets import PRESETS

            for name, pr in PRESETS.items():
                n = count_parameters(build_model(pr))
                print(f"{name:6s} {n:>10d} parameters (paper {pr.paper_parameters:>9d}, {100 * (n / pr.paper_parameters - 1):+.1f} %)")
            return 0
        if args.cmd == "evaluate":
            from .evaluate import evaluate
            from .export import load_potential

            err = evaluate(load_potential(args.model, args.device), args.dataset)
            print(f"{err.frames} frames")
            print(err.markdown())
            return 0
        from .training import TrainSettings, train, write_config

        s = TrainSettings.from_toml(args.config)
        if args.print_config:
            print(write_config(s).read_text())
            return 0
        run = train(s)
        print(f"run folder: {run}")
        return 0
    except (ValueError, FileNotFoundError, NotImplementedError) as exc:
        print(f"allegro-fm: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # tea-align errors name the file and frame
        from tea_align import TeaAlignError

        if isinstance(exc, TeaAlignError):
            print(f"allegro-fm: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
