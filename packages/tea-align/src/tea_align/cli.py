"""``tea-align`` command line: fit, apply, convert, inspect, report, demo.

Inputs are written ``PATH[,format=F][,name=N][,level=L][,key=value...]``; formats: ase (extxyz and
all ase.io formats), mptrj, spice, transition1x, tea (schema-v1). Exit status 0 on success, 2 on bad
input (with one line naming the file and frame), 1 on other errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import __version__
from .alignment import Alignment
from .commandline import command_parser, run, subcommands
from .errors import TeaAlignError
from .pipeline import Preprocessing, apply, convert, fit, inspect
from .readers import InputSpec
from .report import write_report
from .synthetic import LEVEL_S, LEVEL_T, Truth, make_demo_data
from .units import parse_force


def _preprocessing(args):
    try:
        max_force = None if args.max_force.lower() == "none" else parse_force(args.max_force)
    except ValueError as exc:
        raise TeaAlignError(f"--max-force: {exc}") from exc
    return Preprocessing(drop_noble_gases=not args.keep_noble_gases, max_force=max_force)


def _add_prep(p):
    p.add_argument(
        "--max-force",
        default="0.25 Hartree/Bohr",
        help="drop frames with any force component above this, with units (default: the paper's 0.25 Hartree/Bohr; 'none' keeps all)",
    )
    p.add_argument(
        "--keep-noble-gases",
        action="store_true",
        help="keep frames with noble gases (the paper drops them)",
    )


def _load_atom_energies(path):
    if path is None:
        return None
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TeaAlignError(f"cannot read isolated-atom energies ({exc})", path=path) from exc
    if not isinstance(d, dict) or not all(isinstance(v, dict) for v in d.values()):
        raise TeaAlignError(
            'isolated-atom energies must be {"level": {"El": eV, ...}, ...}', path=path
        )
    return d


def _level_pairs(items, option: str, number: bool = False) -> dict:
    """NAME=VALUE items of a repeatable option (split at the last '=', so names may hold '=' and commas)."""
    out = {}
    for item in items or ():
        name, eq, value = item.rpartition("=")
        if not eq or not name or not value:
            raise TeaAlignError(f"{option} {item!r}: expected NAME=VALUE")
        if number:
            try:
                value = float(value)
            except ValueError:
                raise TeaAlignError(f"{option} {item!r}: {value!r} is not a number") from None
            if not np.isfinite(value) or value <= 0:
                raise TeaAlignError(f"{option} {item!r}: the scale must be a finite number > 0")
        out[name] = value
    return out


def _inputs(args, attr: str = "data") -> list:
    """The positional inputs as InputSpecs, with ``--level NAME=LEVEL`` applied (NAME: the input's name=, else
    ``readers.default_name``: its file name without the format suffix)."""
    specs = [InputSpec.parse(x) for x in getattr(args, attr)]
    levels = _level_pairs(getattr(args, "level", None), "--level")
    names = {s.name for s in specs}
    for name in levels:
        if name not in names:
            raise TeaAlignError(
                f"--level {name}=...: no input is named {name!r} (inputs: {', '.join(sorted(names))})"
            )
    return [replace(s, level=levels.get(s.name, s.level)) for s in specs]


def _add_level(p):
    p.add_argument(
        "--level",
        action="append",
        metavar="NAME=LEVEL",
        help="level of theory of the input named NAME (its name=, else its file name without the format "
        "suffix: mptrj.v2.json -> mptrj.v2); repeatable. Level names may "
        "contain commas here, as in the default SPICE level",
    )


def cmd_fit(args) -> int:
    if not args.data and len(args.anchors) > 1 and not args.anchors_only:
        raise TeaAlignError(
            f"--anchors took all {len(args.anchors)} files and no data was given: put the datasets before "
            "--anchors (tea-align fit DATA... --anchors A...), or pass --anchors-only to fit from anchors alone"
        )
    fix = _level_pairs(args.fix_scale, "--fix-scale", number=True)
    al = fit(
        args.anchors,
        _inputs(args),
        target_level=args.target,
        atom_energies=_load_atom_energies(args.atom_energies),
        fix_scale=fix or None,
        preprocessing=_preprocessing(args),
        progress=not args.quiet,
    )
    al.save(args.output)
    for lvl, ls in al.levels.items():
        print(
            f"{lvl} -> {al.target_level}: scale {ls.scale:.8f}, {ls.n_anchors} anchors, anchor RMSE "
            f"{ls.anchor_rmse_raw * 1e3:.1f} -> {ls.anchor_rmse_aligned * 1e3:.4f} meV/atom"
        )
    if al.statistics:
        st = al.statistics
        print(
            f"data: {st['frames']} frames, composition-model RMSE {st['rmse_before'] * 1e3:.1f} -> "
            f"{st['rmse_after'] * 1e3:.2f} meV/atom; dropped {st['dropped']}"
        )
    print(f"wrote {args.output}")
    return 0


def cmd_apply(args) -> int:
    al = Alignment.load(args.alignment)
    s = apply(
        al,
        _inputs(args),
        args.output,
        preprocessing=_preprocessing(args),
        progress=not args.quiet,
        compression=None if args.compression == "none" else args.compression,
        batch_size=args.batch_size,
    )
    print(
        f"wrote {s.path}: {s.frames} frames, {s.atoms} atoms, dropped {s.dropped}, {s.seconds:.1f} s"
    )
    return 0


def cmd_convert(args) -> int:
    s = convert(
        _inputs(args),
        args.output,
        progress=not args.quiet,
        compression=None if args.compression == "none" else args.compression,
    )
    print(f"wrote {s.path}: {s.frames} frames, {s.atoms} atoms, {s.seconds:.1f} s")
    return 0


def cmd_inspect(args) -> int:
    info = inspect(_inputs(args), progress=not args.quiet)
    if args.json:
        print(json.dumps(info, indent=1, default=float))
        return 0
    print(f"{info['frames']} frames")
    print(
        f"{'source':<20} {'level of theory':<44} {'frames':>9} {'atoms':>10} {'E/atom min':>11} {'E/atom max':>11} {'max|F|':>8}"
    )
    aligned = False
    for name, s in info["sources"].items():
        lo, hi = (
            s["aligned_energy_per_atom_min"],
            s["aligned_energy_per_atom_max"],
        )  # what the file holds (aligned if it is)
        aligned |= (lo, hi) != (s["energy_per_atom_min"], s["energy_per_atom_max"])
        print(
            f"{name:<20} {s['level_of_theory']:<44} {s['frames']:>9} {s['atoms']:>10} {lo:>11.4f} {hi:>11.4f} {s['max_abs_force']:>8.3f}"
        )
    print(
        "energies in eV/atom"
        + (
            " after alignment (the source's raw energies: --json, energy_per_atom_*)"
            if aligned
            else ""
        )
        + ", forces in eV/A"
    )
    print(f"{'element':<8} {'frames':>9} {'atoms':>10}")
    for sym, e in info["elements"].items():
        print(f"{sym:<8} {e['frames']:>9} {e['atoms']:>10}")
    return 0


def cmd_report(args) -> int:
    md, png = write_report(Alignment.load(args.alignment), args.output)
    print(md.read_text())
    print(f"wrote {md}" + (f" and {png}" if png else ""))
    return 0


def cmd_demo(args) -> int:
    """Synthetic two-level fusion end to end: data, fit, apply, inspect, report."""
    out = Path(args.output)
    paths = make_demo_data(out / "data")
    data = [f"{paths['periodic']},level={LEVEL_S}", f"{paths['molecules']},level={LEVEL_T}"]
    al = fit([paths["anchors"]], data, target_level=LEVEL_T, progress=not args.quiet)
    al.save(out / "alignment.json")
    s = apply(Alignment.load(out / "alignment.json"), data, out / "aligned.h5")
    md, png = write_report(al, out / "report")
    t = Truth()
    ls = next(iter(al.levels.values()))
    print(f"fitted scale {ls.scale:.9f} (true {t.alpha}); inner-core offsets (fitted vs true, eV):")
    for sym, off in ls.inner_core_offsets.items():
        print(f"  {sym:<3} {off:16.6f} {t.offsets[sym]:16.6f}")
    print(f"wrote {s.path} ({s.frames} frames), {out / 'alignment.json'}, {md}, {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``tea-align`` command line (every subcommand and option): ``main`` runs it, the docs list it."""
    ap = command_parser(
        "tea-align", "Total Energy Alignment of quantum-chemistry datasets.", __version__
    )
    sub = subcommands(ap)

    p = sub.add_parser(
        "fit",
        help="fit an alignment from anchors (and gather statistics over the data)",
        writes=True,
        output_required=True,
        output_help="alignment JSON to write",
    )
    p.add_argument(
        "data",
        nargs="*",
        help="datasets to fuse (for statistics and per-element reference energies)",
    )
    p.add_argument(
        "--anchors",
        nargs="+",
        action="extend",
        required=True,
        help="structures computed at several levels, isolated atoms included (repeatable; it takes every file "
        "after it, so put the data before it)",
    )
    p.add_argument(
        "--anchors-only",
        action="store_true",
        help="fit from the anchors alone (no data statistics)",
    )
    p.add_argument(
        "--target", required=True, help="target level of theory (as the readers name it)"
    )
    p.add_argument("--atom-energies", help='JSON {"level": {"El": eV}} of isolated-atom energies')
    p.add_argument(
        "--fix-scale",
        action="append",
        metavar="LEVEL=ALPHA",
        help="do not fit the AEC scale of LEVEL (repeatable)",
    )
    _add_level(p)
    _add_prep(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser(
        "apply",
        help="align datasets into one schema-v1 HDF5 file",
        writes=True,
        output_required=True,
        output_help="aligned HDF5 file to write",
    )
    p.add_argument("data", nargs="+")
    p.add_argument("--alignment", required=True)
    p.add_argument("--compression", default="gzip", choices=["gzip", "lzf", "none"])
    p.add_argument(
        "--batch-size",
        type=int,
        default=4096,
        help="frames read, aligned and written at a time (memory)",
    )
    _add_level(p)
    _add_prep(p)
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser(
        "convert",
        help="ingest datasets unchanged into one schema-v1 file",
        writes=True,
        output_required=True,
        output_help="HDF5 file to write",
    )
    p.add_argument("data", nargs="+")
    p.add_argument("--compression", default="gzip", choices=["gzip", "lzf", "none"])
    _add_level(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("inspect", help="counts per element and source, energy ranges")
    p.add_argument("data", nargs="+")
    p.add_argument("--json", action="store_true")
    _add_level(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "report",
        help="residuals before/after alignment: report.md + residuals.png",
        writes=True,
        output_required=True,
        output_help="output folder",
    )
    p.add_argument("alignment")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "demo",
        help="run fit/apply/report on synthetic two-level data with a known answer",
        writes=True,
        output_default="tea-align-demo",
        output_help="output folder",
    )
    p.set_defaults(func=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tea-align`` command (exit statuses: docs/cli.md)."""
    ap = build_parser()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(
        ap, argv, bad_input=(TeaAlignError,)
    )  # OSError: commandline.run (unwritable place 2, full disk 1)


if __name__ == "__main__":
    sys.exit(main())
