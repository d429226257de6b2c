"""``allegro-fm-bench`` command. Today: ``make-mini-data`` (the mini model's dataset); the paper's experiments are not implemented yet."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``allegro-fm-bench``; exit status 2 on bad input."""
    ap = argparse.ArgumentParser(prog="allegro-fm-bench")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make-mini-data", help="label the Allegro-FM-mini dataset (PBE level and wB97M-D3(BJ) level)")
    p.add_argument("outdir")
    p.add_argument("--part", choices=["pbe", "molecular", "all"], default="all")
    p.add_argument("--quick", action="store_true", help="a few frames per stage (for tests)")
    p.add_argument("--only", nargs="*", default=(), help="pbe part: only these structures (to label in parallel processes)")
    p.add_argument("--threads", type=int, default=0, help="torch / PySCF threads (0: leave as is)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    from .minidata import QUICK, MiniDataSettings, make_molecular_part, make_pbe_part

    st = QUICK if args.quick else MiniDataSettings()
    if args.part in ("pbe", "all"):
        make_pbe_part(args.outdir, st, only=tuple(args.only))
    if args.part in ("molecular", "all"):
        make_molecular_part(args.outdir, st)
    return 0


if __name__ == "__main__":
    sys.exit(main())
