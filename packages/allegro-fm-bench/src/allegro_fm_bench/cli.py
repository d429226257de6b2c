"""``allegro-fm-bench`` command: ``run all|EXPERIMENT`` (the paper's results as a report), ``make-mini-data`` (the mini
model's dataset), ``make-active-data`` (an active-learning round of it), ``labels`` (the published labels of a
remake: pack, restore, check) and ``peer-errors``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from pathlib import Path

from tea_align.commandline import command_parser, run, subcommands
from tea_align.files import write_text_atomic

from .__about__ import __version__
from .experiments import EXPERIMENTS, resolve_model, run_experiment
from .mini import labelstore
from .mini.active import make_active_molecular, make_active_pbe
from .mini.minidata import QUICK, MiniDataSettings, make_molecular_part, make_pbe_part
from .mini.peers import PEERS, force_errors, markdown, peer_calculator
from .report import machine, write_report


def build_parser() -> argparse.ArgumentParser:
    """The ``allegro-fm-bench`` command line (every subcommand and option): ``main`` runs it, the docs list it."""
    ap = command_parser(
        "allegro-fm-bench", "The paper's results, reproduced: report.md + plots.", __version__
    )
    sub = subcommands(ap)
    p = sub.add_parser(
        "make-mini-data",
        help="label the Allegro-FM-mini dataset (PBE level and wB97M-D3(BJ) level)",
        writes=True,
        output_required=True,
        output_help="dataset folder (resumable: finished stages are kept)",
    )
    p.add_argument("--part", choices=["pbe", "molecular", "all"], default="all")
    p.add_argument("--quick", action="store_true", help="a few frames per stage (for tests)")
    p.add_argument(
        "--only",
        nargs="*",
        default=(),
        help="pbe part: only these structure families (to label in parallel processes)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch / PySCF threads (0: leave as is)")
    p.add_argument(
        "--reaction-path",
        default="",
        help="molecular part: a finished reference NEB folder "
        "(scripts/check_neb_reference.py) whose band and saddle are labelled too (round 2)",
    )
    p.add_argument(
        "--active-model",
        default="",
        help="molecular part: a model whose own NEB bands (the bench's quick "
        "carbonic-acid NEB) are labelled too (round 2: active learning)",
    )
    p.set_defaults(func=_make_mini_data)
    a = sub.add_parser(
        "make-active-data",
        help="active learning: label the configurations a model reaches in the bench's "
        "EOS relaxations (PBE level) and NEB bands (wB97M-D3(BJ) level)",
        writes=True,
        output_required=True,
        output_help="the mini dataset folder (writes pbe-roundK.extxyz, molecular-roundK.extxyz; resumable)",
    )
    a.add_argument(
        "model", help="the model whose configurations are labelled (.ckpt / .nequip.zip)"
    )
    a.add_argument(
        "--round",
        type=int,
        required=True,
        help="the data round these frames make (3, 4, ...; 1 and 2 are make-mini-data's)",
    )
    a.add_argument("--part", choices=["pbe", "molecular", "all"], default="all")
    a.add_argument("--threads", type=int, default=0, help="torch / PySCF threads (0: leave as is)")
    a.add_argument(
        "--reaction-path",
        default="",
        help="molecular part: a finished reference NEB folder "
        "(scripts/check_neb_reference.py) whose transition-state region (the saddle, rattled, and the PBE "
        "descents from it, computed there when absent) is labelled too",
    )
    a.add_argument(
        "--no-md", action="store_true", help="no model-MD stages (rounds >= 4 have them by default)"
    )
    a.add_argument(
        "--band-loop",
        type=int,
        default=0,
        metavar="K",
        help="molecular part: iteration K (1, 2, ...) of a "
        "band loop in place of the single-shot NEB bands: MODEL's quick in-plane band, snapshots every "
        "100 FIRE steps; the round's file holds iterations 1..K (round >= 5)",
    )
    a.set_defaults(func=_make_active_data)
    lb = sub.add_parser(
        "labels",
        help="the published labels of a make_mini_model.sh run (datasets/allegro-fm-mini): "
        "pack RUN STORE | restore STORE RUN | check STORE RUN",
    )
    lb.add_argument("action", choices=["pack", "restore", "check"])
    lb.add_argument(
        "source", help="pack: the run folder (make_mini_model.sh's OUT); restore/check: the store"
    )
    lb.add_argument("target", help="pack: the store; restore/check: the run folder")
    lb.set_defaults(func=_labels)
    q = sub.add_parser(
        "peer-errors",
        help="force errors of the weight-shipping peers (SevenNet-0, CHGNet) on an aligned dataset, "
        "per structure family",
        writes=True,
        output_required=True,
        output_help="markdown table to write",
    )
    q.add_argument(
        "dataset", help="tea-align aligned dataset (e.g. the mini model's held-out families)"
    )
    q.add_argument("--peer", action="append", choices=list(PEERS), help="repeatable (default: all)")
    q.add_argument("--by", choices=["key", "source"], default="key")
    q.add_argument("--device", default="cpu")
    q.set_defaults(func=_peer_errors)
    r = sub.add_parser(
        "run",
        help="run the paper's experiments and write report.md (+ PNG plots)",
        writes=True,
        output_default="runs/bench",
        output_help="report folder",
    )
    r.add_argument(
        "experiments",
        nargs="+",
        choices=["all", *EXPERIMENTS],
        metavar="EXPERIMENT",
        help=f"all, or any of: {', '.join(EXPERIMENTS)}",
    )
    r.add_argument(
        "--model",
        default="allegro-fm-mini",
        help="a model file (.ckpt / .nequip.zip / .nequip.pt2 / "
        "nequip 0.6.x .pt such as afm256_01_HL.pt) or a shipped model's name",
    )
    r.add_argument(
        "--transition1x",
        default="",
        help="Transition1x data: the dataset's HDF5 or an endpoints folder "
        "(default: $ALLEGRO_FM_TRANSITION1X, else ../shared/data/transition1x_sample if present)",
    )
    r.add_argument(
        "--quick",
        action="store_true",
        help="CI-sized settings (all: < 20 min on 2 cores); default: the paper's",
    )
    r.set_defaults(func=_run)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``allegro-fm-bench`` (conventions: docs/cli.md; ``run`` exits 1 when an experiment failed)."""
    ap = build_parser()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return run(ap, argv, bad_input=(ValueError,))


def _make_mini_data(args) -> int:
    """Label the mini dataset's parts (resumable per stage)."""
    _threads(args.threads)
    st = QUICK if args.quick else MiniDataSettings()
    if args.part in ("pbe", "all"):
        make_pbe_part(args.output, st, only=tuple(args.only))
    if args.part in ("molecular", "all"):
        make_molecular_part(
            args.output,
            st,
            reaction_path=args.reaction_path or None,
            active_model=args.active_model or None,
        )
    return 0


def _make_active_data(args) -> int:
    """Label one active-learning round of a model (resumable per stage)."""
    if args.round < 3:
        raise ValueError(
            f"--round {args.round}: rounds 1 and 2 are make-mini-data's; an active round is 3 or later"
        )
    if not Path(args.model).is_file():
        raise ValueError(f"{args.model}: no such model file")
    _threads(args.threads)
    if args.reaction_path and not Path(args.reaction_path, "saddle.extxyz").is_file():
        raise ValueError(f"{args.reaction_path}: no finished reference NEB (saddle.extxyz)")
    if args.band_loop < 0 or (args.band_loop and args.round < 5):
        raise ValueError(
            f"--band-loop {args.band_loop}: an iteration is 1, 2, ... of an active round 5 or later"
        )
    if args.part in ("pbe", "all"):
        make_active_pbe(args.output, args.model, args.round, md=not args.no_md)
    if args.part in ("molecular", "all"):
        make_active_molecular(
            args.output,
            args.model,
            args.round,
            reaction_path=args.reaction_path or None,
            md=not args.no_md,
            band_loop=args.band_loop,
        )
    return 0


def _labels(args) -> int:
    """Pack, restore or check a run's labelling stages against the store; check exits 1 when a stage differs."""
    status = getattr(labelstore, args.action)(args.source, args.target)
    counts = Counter(status.values())
    for rel, what in status.items():
        if what != "same" and not args.quiet:
            print(f"{what:>12}  {rel}")
    print(
        f"labels {args.action}: " + ", ".join(f"{n} {what}" for what, n in sorted(counts.items())),
        flush=True,
    )
    return 1 if args.action == "check" and counts.get("differs") else 0


def _threads(n: int) -> None:
    if n:
        os.environ["OMP_NUM_THREADS"] = str(n)
        import torch  # lazy: torch takes seconds to import; only model paths need it

        torch.set_num_threads(n)


def _peer_errors(args) -> int:
    """Force RMSE and cosine of each peer on the dataset's periodic frames, grouped by family (or source)."""
    results = {}
    for name in args.peer or PEERS:
        results[name] = force_errors(
            peer_calculator(name, args.device), args.dataset, by=args.by, progress=not args.quiet
        )
        print(
            f"{name}: {results[name]['all']['force_rmse_meV_A']:.1f} meV/A over {results[name]['all']['frames']} frames "
            f"({results[name]['skipped_frames']} skipped)",
            flush=True,
        )
    text = markdown(results)
    print(text)
    write_text_atomic(args.output, text)
    return 0


def _run(args) -> int:
    """Run the chosen experiments in order; the report is rewritten after each one (a crash keeps the others)."""
    names = (
        list(EXPERIMENTS) if "all" in args.experiments else list(dict.fromkeys(args.experiments))
    )
    model = resolve_model(args.model)  # ValueError naming the model: bad input (exit 2)
    if args.quiet:  # the experiments' tqdm bars (optimisers, PySCF, MD) read tqdm's own switch
        os.environ["TQDM_DISABLE"] = "1"
    if args.transition1x:
        os.environ["ALLEGRO_FM_TRANSITION1X"] = args.transition1x
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    header = (
        f"Model `{model}`; {'quick (CI-sized)' if args.quick else 'paper'} settings; machine: {machine()}. "
        "Each section puts the measured numbers next to the paper's."
    )
    results = []
    for name in names:
        results.append(run_experiment(name, model, out, quick=args.quick))
        write_report(results, out / "report.md", header)
        print(f"{name}: {results[-1].status} ({results[-1].provenance.wall_s:.0f} s)", flush=True)
    print(f"report: {out / 'report.md'}")
    return 0 if all(r.status == "ok" or r.status.startswith("skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
