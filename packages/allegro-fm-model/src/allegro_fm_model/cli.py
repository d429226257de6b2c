"""``allegro-fm`` command line: ``train``, ``finetune``, ``evaluate``, ``export``, ``heads``, ``params`` (conventions:
docs/cli.md).

``allegro-fm train run.toml`` reads a ``[train]`` table (keys: the fields of TrainSettings, defaults
the paper's), writes the nequip config into the run folder and trains, resuming from last.ckpt.
``allegro-fm finetune`` does the same from a pretrained model: a checkpoint, or a nequip 0.6.x deployed file such as
the published ``afm256_01_HL.pt`` (fine-tuned as TorchScript, ``legacy_finetune.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import tea_align
from tea_align import TeaAlignError
from tea_align.commandline import command_parser, run, subcommands
from tea_align.files import write_text_atomic
from tea_align.units import parse_force

from .__about__ import __version__
from .evaluate import evaluate
from .export import compile_model, package_model
from .forgetting import forgetting, write_report
from .lammps import export_lammps_mliap
from .legacy import is_torchscript_archive
from .legacy_finetune import finetune_legacy
from .loading import load_potential, resolve_model
from .model import build_model, count_parameters
from .presets import PRESETS
from .replay import make_replay
from .training import TrainSettings, kept_blocks, split_indices, train, write_config


def cmd_export(args) -> int:
    """Deployable files of a model, each checked against it before it is written."""
    if not args.output and not args.lammps_mliap and not args.compiled:
        raise ValueError(
            "give -o OUT.nequip.zip, --compiled OUT.nequip.pt2 and/or --lammps-mliap OUT.nequip.lmp.pt"
        )
    if args.output:
        out = package_model(args.checkpoint, args.output)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    if args.compiled:
        if not args.quiet:
            print("compiling with AOTInductor (a C++ build: minutes) ...", flush=True)
        out = compile_model(args.checkpoint, args.compiled, args.device)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), checked against the eager model")
    if args.lammps_mliap:
        out = export_lammps_mliap(args.checkpoint, args.lammps_mliap)
        print(
            f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): pair_style mliap unified {out.name} 0"
        )
    return 0


def _frames(paths: list[str], every: int = 1, max_force: float | None = None) -> list:
    """Labelled frames of extxyz (or any ase.io) files, every ``every``-th, without those whose largest force component
    exceeds ``max_force`` (eV/A; the paper's preprocessing, as the model's training data); ``info["structure"]``
    defaults to the file's name."""
    import ase.io  # lazy: only the heads command reads frames here

    out = []
    for p in paths:
        for a in ase.io.read(p, ":")[::every]:
            if max_force is not None and np.abs(a.get_forces()).max() > max_force:
                continue
            a.info.setdefault("structure", Path(p).name.split(".")[0])
            out.append(a)
    if not out:
        raise ValueError(f"no frames in {', '.join(paths)}")
    return out


def cmd_heads(args) -> int:
    """Shallow-ensemble heads of a model (heads.py), and their calibration on held-out frames."""
    from .heads import calibrate, fit_heads, load_heads_potential  # lazy: torch

    max_force = None if args.max_force.lower() == "none" else parse_force(args.max_force)
    frames = _frames(args.train, args.every, max_force)
    cal = frames[1::4]  # every 4th frame calibrates the deviation; the rest are resampled
    train = [a for k, a in enumerate(frames) if k % 4 != 1]
    heads = fit_heads(
        args.model, train, cal, n_heads=args.heads, seed=args.seed, progress=not args.quiet
    )
    out = heads.save(args.output)
    print(
        f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB): {args.heads} heads on {len(train)} frames, scale "
        f"{heads.scale:.3g} (calibrated on {len(cal)} frames)"
    )
    if args.check:
        pot = load_heads_potential(args.model, out)
        c = calibrate(pot, _frames(args.check, 1, max_force))
        png = out.with_name(out.name.replace(".npz", "") + ".calibration.png")
        c.plot(png, f"{Path(str(args.model)).name}: {args.heads} heads, held-out frames")
        table = c.table()
        write_text_atomic(png.with_suffix(".md"), table)
        print(table + f"wrote {png} and {png.with_suffix('.md')}")
    return 0


def cmd_params(args) -> int:
    """Trainable parameters of the presets next to the paper's Table 1."""
    for name, pr in PRESETS.items():
        n = count_parameters(build_model(pr))
        print(
            f"{name:6s} {n:>10d} parameters (paper {pr.paper_parameters:>9d}, {100 * (n / pr.paper_parameters - 1):+.1f} %)"
        )
    return 0


def cmd_evaluate(args) -> int:
    """RMSEs of a model on an aligned dataset, optionally on one split of a training run; with --before/--after the
    forgetting report of a fine-tuning on every dataset given."""
    if args.before or args.after:
        if not (args.before and args.after):
            raise ValueError("give both --before START and --after NEW")
        if args.split:
            raise ValueError("--split is for one model; --before/--after evaluate whole datasets")
        datasets = [p for p in (args.model, args.dataset) if p]
        report = forgetting(
            args.before, args.after, datasets, args.device, refit_offsets=args.refit_offsets
        )
        print(report.markdown())
        if args.output:
            md, png = write_report(report, args.output)
            print(f"wrote {md} and {png}")
        return 0
    if not args.dataset:
        raise ValueError("evaluate needs MODEL DATASET (or --before START --after NEW DATASET...)")
    indices = None
    if args.split:
        run_dir = Path(args.run or Path(args.model).parent)
        try:
            st = json.loads((run_dir / "settings.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"--split needs the training run's settings.json ({exc})") from exc
        with tea_align.open_dataset(args.dataset) as ds:
            n = len(ds)
        keep = kept_blocks(args.dataset, st["split_keep"]) if st.get("split_keep") else 0
        parts = dict(
            zip(
                ("train", "val", "test"),
                split_indices(n, st["val_fraction"], st["test_fraction"], st["seed"], keep),
            )
        )
        indices = parts[args.split]
    pot = load_potential(args.model, args.device)
    print(
        f"model {args.model}: {len(pot.species)} elements, cutoff {pot.cutoff:g} A, level of theory {pot.level_of_theory}: "
        f"{' '.join(pot.species)}",
        flush=True,
    )
    err = evaluate(pot, args.dataset, indices, by=args.by, refit_offsets=args.refit_offsets)
    text = (
        f"{err.frames} frames"
        + (f" ({args.split} split)" if args.split else "")
        + "\n\n"
        + err.markdown()
    )
    print(text)
    if args.output:
        write_text_atomic(args.output, text + "\n")
    return 0


def cmd_make_replay(args) -> int:
    """A replay set labelled by the starting model (replay.py)."""
    out = make_replay(
        args.model,
        args.structures,
        args.output,
        rattle=tuple(args.rattle),
        strain=tuple(args.strain),
        copies=args.copies,
        md_steps=args.md_steps,
        md_every=args.md_every,
        temperature_K=args.temperature,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )
    with tea_align.open_dataset(out) as ds:
        print(f"wrote {out}: {len(ds)} frames at level of theory {ds.sources[0].level_of_theory}")
    return 0


def cmd_train(args) -> int:
    """Train (or resume) from the [train] table of a TOML file."""
    s = TrainSettings.from_toml(args.config)
    if args.print_config:
        print(write_config(s).read_text())
        return 0
    print(f"run folder: {train(s)}")
    return 0


def cmd_finetune(args) -> int:
    """Fine-tune a pretrained model: a checkpoint through nequip, a nequip 0.6.x deployed file as TorchScript."""
    s = TrainSettings.from_toml(args.config)
    if args.init_from:
        s = replace(s, init_from=str(args.init_from))
    if args.freeze is not None:
        s = replace(s, freeze=tuple(args.freeze))
    if args.refit_offsets:
        s = replace(s, refit_offsets=True)
    if not s.init_from:
        raise ValueError(
            "finetune needs a pretrained model: --init-from FILE or init_from in [train]"
        )
    s = replace(
        s, init_from=str(resolve_model(s.init_from))
    )  # a shipped model's name -> its file; FileNotFoundError
    if is_torchscript_archive(
        s.init_from
    ):  # a nequip 0.6.x deployed file, e.g. the published afm256_01_HL.pt
        if args.print_config:
            raise ValueError(
                f"{s.init_from} is a deployed TorchScript model: fine-tuned directly, no nequip config"
            )
        run_dir = finetune_legacy(
            s, device=args.device, progress=not args.quiet, engine=args.legacy_engine
        )
        print(f"run folder: {run_dir} (best.pth, last.pth: deployed files in the original format)")
        return 0
    if args.print_config:
        print(write_config(s).read_text())
        return 0
    print(f"run folder: {train(s)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``allegro-fm`` command line (every subcommand and option): ``main`` runs it, the docs list it."""
    ap = command_parser(
        "allegro-fm", "Allegro-FM models: presets, training, evaluation, deployment.", __version__
    )
    sub = subcommands(ap)
    p = sub.add_parser("train", help="train (or resume) from a TOML file with a [train] table")
    p.add_argument("config")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="only write and print the generated nequip config",
    )
    p.set_defaults(func=cmd_train)
    p = sub.add_parser(
        "finetune",
        help="fine-tune a trained model on a new dataset (TOML [train] table; init_from required)",
    )
    p.add_argument("config")
    p.add_argument(
        "--init-from",
        help="the pretrained model (overrides init_from in the file): a checkpoint, a nequip package "
        "(.nequip.zip) or a shipped model's name (allegro-fm-mini), or a nequip 0.6.x "
        "deployed file such as the published afm256_01_HL.pt (fine-tuned as TorchScript)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="device for fine-tuning a deployed TorchScript file (cpu, cuda, xpu)",
    )
    p.add_argument(
        "--freeze",
        nargs="*",
        help="groups to freeze: embedding layer0 layer1 readout energy_shifts (or name prefixes); "
        "a deployed TorchScript file: embedding layerK readout",
    )
    p.add_argument(
        "--refit-offsets",
        action="store_true",
        help="data at another level of theory than the model's: refit the "
        "per-element energy shifts on the training frames before training (else refused, naming both levels)",
    )
    p.add_argument(
        "--legacy-engine",
        choices=("torchscript", "port"),
        default="torchscript",
        help="a nequip 0.6.x deployed file: train its TorchScript code (default) or its plain-PyTorch port; "
        "both write best.pth/last.pth in the original format (allegro-fm export --compiled compiles them)",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="only write and print the generated nequip config",
    )
    p.set_defaults(func=cmd_finetune)
    p = sub.add_parser(
        "heads",
        help="shallow-ensemble heads of a model: its last layer refitted on bootstrap resamples "
        "(a committee at about one model's cost), calibrated, optionally checked on held-out frames",
        writes=True,
        output_required=True,
        output_help="heads file to write (MODEL.heads.npz, beside the model)",
    )
    p.add_argument(
        "model", help="checkpoint (.ckpt), nequip package (.nequip.zip) or a shipped model's name"
    )
    p.add_argument(
        "--train",
        nargs="+",
        required=True,
        help="labelled frames at the model's level (extxyz or any ase.io format; .xz read too); every 4th frame "
        "calibrates the deviation, the rest are resampled",
    )
    p.add_argument("--every", type=int, default=1, help="take every N-th frame of --train")
    p.add_argument(
        "--max-force",
        default="0.25 Hartree/Bohr",
        help="drop frames with a force component above this (the paper's preprocessing, as tea-align's; 'none' keeps all)",
    )
    p.add_argument("--heads", type=int, default=4, help="number of heads (>= 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--check",
        nargs="*",
        default=(),
        help="held-out labelled frames: per-atom deviation vs actual error (OUT.calibration.png and .md)",
    )
    p.set_defaults(func=cmd_heads)
    p = sub.add_parser("params", help="trainable parameters of the presets vs the paper")
    p.set_defaults(func=cmd_params)
    p = sub.add_parser(
        "evaluate",
        help="RMSEs (meV/atom, meV/A, MPa) of a model on an aligned dataset",
        writes=True,
        output_help="also write the table (markdown) here",
    )
    p.add_argument(
        "model",
        help="checkpoint (.ckpt), nequip package (.nequip.zip), compiled .nequip.pt2, nequip 0.6.x deployed "
        ".pt/.pth or a shipped model's name; with --before/--after: the first dataset",
    )
    p.add_argument(
        "dataset",
        nargs="?",
        help="tea-align aligned dataset (schema v1); with --before/--after: a second one",
    )
    p.add_argument(
        "--before",
        help="forgetting report: the model before fine-tuning (with --after; the positional arguments are then the "
        "datasets: the new data's held-out frames, a replay or reference set); -o writes the table and a plot",
    )
    p.add_argument("--after", help="forgetting report: the fine-tuned model")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--split",
        choices=["train", "val", "test"],
        help="only the frames of this split of a training run",
    )
    p.add_argument(
        "--run",
        help="the training run folder whose settings.json defines --split (default: the model's folder)",
    )
    p.add_argument(
        "--by",
        choices=["source", "key"],
        default="source",
        help="group errors by source dataset or by frame key (e.g. extxyz config_type: structure families)",
    )
    p.add_argument(
        "--refit-offsets",
        action="store_true",
        help="data at another level of theory than the model's: take "
        "energy errors after per-element offsets fitted on these frames (printed); forces and stress unchanged",
    )
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser(
        "export",
        help="deployable files of a model, each checked against it: .nequip.zip (eager), "
        ".nequip.pt2 (AOTInductor), LAMMPS ML-IAP",
        writes=True,
        output_help="output path ending in .nequip.zip (the deployable package; needs a checkpoint)",
    )
    p.add_argument(
        "checkpoint",
        help="checkpoint (.ckpt), package (.nequip.zip), a shipped model's name, or (for --compiled) a nequip 0.6.x "
        "deployed file such as afm256_01_HL.pt",
    )
    p.add_argument(
        "--compiled",
        help="also/instead write the AOTInductor file (path ending in .nequip.pt2; minutes); a nequip 0.6.x file is "
        "compiled through its plain-PyTorch port and checked against the TorchScript original",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="device type the compiled file is built for (cpu, cuda, xpu)",
    )
    p.add_argument(
        "--lammps-mliap",
        help="also/instead write the LAMMPS ML-IAP file (path ending in .nequip.lmp.pt)",
    )
    p.set_defaults(func=cmd_export)
    p = sub.add_parser(
        "make-replay",
        help="a replay set for fine-tuning: structures, rattled and strained copies and short MD snapshots, "
        "labelled by the starting model itself (tea-align schema v1, the model's level of theory)",
        writes=True,
        output_required=True,
        output_help="replay dataset to write (.h5)",
    )
    p.add_argument(
        "model", help="the starting model (any file load_potential reads, or a shipped name)"
    )
    p.add_argument(
        "structures", nargs="+", help="structure files ase.io reads (every frame is used)"
    )
    p.add_argument(
        "--rattle", type=float, nargs="*", default=[0.03, 0.08], help="rattle amplitudes (A)"
    )
    p.add_argument(
        "--strain",
        type=float,
        nargs="*",
        default=[0.02],
        help="random strain magnitudes (periodic cells)",
    )
    p.add_argument(
        "--copies", type=int, default=3, help="copies per rattle amplitude and per strain"
    )
    p.add_argument(
        "--md-steps",
        type=int,
        default=0,
        help="also snapshots of a Langevin allegro-fm-md run this long",
    )
    p.add_argument("--md-every", type=int, default=20, help="steps between MD snapshots")
    p.add_argument("--temperature", type=float, default=300.0, help="MD temperature (K)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_make_replay)
    # bad input: ValueError (this package's checks, LegacyModelError), missing/unwritable files, tea-align's errors
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``allegro-fm`` command (exit statuses: docs/cli.md)."""
    ap = build_parser()
    return run(ap, argv, bad_input=(ValueError, NotImplementedError, TeaAlignError))


if __name__ == "__main__":
    sys.exit(main())
