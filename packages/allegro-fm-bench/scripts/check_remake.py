"""Does a remake reproduce the shipped model's numbers? (issue 16: "the remake command from a clean clone reproduces
the card's numbers within 5 %"). Evaluates the shipped model and the remake's model on the remake's own labels (the
same frames: the labels come from the published store, checksums verified) and, with ``--bench``, runs the bench's
quick EOS and tensile experiments with both; prints one table (shipped, remake, relative difference) and exits 1 when
any number differs by more than the tolerance.

    python packages/allegro-fm-bench/scripts/check_remake.py runs/mini-v2            # 7 min on one busy core (2026-12-02)
    python packages/allegro-fm-bench/scripts/check_remake.py runs/mini-v2 --bench    # + quick EOS and tensile: 11.5 min, 1 thread (2026-12-02)

Rows: force RMSE (meV/A), energy RMSE (meV/atom) and force cosine on the whole held-out families (per level of theory
and per family, ``heldout-round4.h5``), force RMSE on the test split of the trained families (``aligned-round4.h5``,
the round-4 run's split); with ``--bench``: T11 density (g/cm3) and B0 (GPa), tensile peak stress (GPa), strain at the
peak and fracture strain (NaN where the cell did not break: equal only to NaN). A row whose shipped value is below
``--floor`` (default 1e-9) is compared absolutely.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import tea_align
from allegro_fm_model import load_potential, resolve_model
from allegro_fm_model.evaluate import evaluate
from allegro_fm_model.training import kept_blocks, split_indices
from tea_align.files import write_text_atomic


def error_rows(tag: str, pot, dataset: Path, by: str, indices=None) -> dict[str, float]:
    """``{row name: value}`` of one model on one dataset: force and energy RMSE and force cosine of every group."""
    err = evaluate(pot, str(dataset), indices, by=by)
    rows = {}
    for group in err.energy:
        for name, table, unit in (
            ("force RMSE", err.forces, "meV/A"),
            ("energy RMSE", err.energy, "meV/atom"),
            ("force cosine", err.force_cosine, ""),
        ):
            if table.get(group) is not None:
                rows[f"{tag}, {group}: {name}" + (f" ({unit})" if unit else "")] = float(
                    table[group]
                )
    return rows


def run_test_indices(run_dir: Path, dataset: Path) -> list[int]:
    """The test-split frame indices of ``dataset`` as the training run in ``run_dir`` split it."""
    st = json.loads((run_dir / "settings.json").read_text())
    with tea_align.open_dataset(str(dataset)) as ds:
        n = len(ds)
    keep = kept_blocks(dataset, st["split_keep"]) if st.get("split_keep") else 0
    return split_indices(n, st["val_fraction"], st["test_fraction"], st["seed"], keep)[2]


def bench_rows(model: str, workdir: Path) -> dict[str, float]:
    """The bench's quick EOS and tensile numbers of ``model`` (run as the CLI runs them, in ``workdir``)."""
    cli = Path(sys.executable).parent / "allegro-fm-bench"  # the console script of this environment
    subprocess.run(
        [str(cli), "run", "eos", "tensile", "--quick", "--model", model, "-o", str(workdir)],
        check=True,
    )
    eos = json.loads((workdir / "eos" / "result.json").read_text())["data"]
    ten = json.loads((workdir / "tensile" / "result.json").read_text())["data"]
    rows = {f"bench EOS: {k}": float(eos[k]) for k in ("density_g_cc", "B0_GPa")}
    for (
        rate,
        r,
    ) in (
        ten.items()
    ):  # one entry per strain rate; fracture_strain is NaN where the cell did not break
        rows.update(
            {
                f"bench tensile {rate} /s: {k}": float(r[k])
                for k in ("peak_GPa", "yield_strain", "fracture_strain")
            }
        )
    return rows


def compare(
    shipped: dict[str, float], remake: dict[str, float], tolerance: float, floor: float = 1e-9
) -> tuple[list[str], list[str]]:
    """Markdown table lines (quantity, shipped, remake, relative difference) and the names of the rows over
    ``tolerance``: relative to the shipped value, absolute below ``floor``; NaN (e.g. no fracture) equals only NaN;
    a row the remake lacks is over."""
    lines = ["| quantity | shipped | remake | difference |", "|---|---|---|---|"]
    bad = []
    for name, a in shipped.items():
        b = remake.get(name)
        if b is None:
            bad.append(name)
            lines.append(f"| {name} | {a:.4g} | missing | - |")
            continue
        if math.isnan(a) or math.isnan(b):
            rel = 0.0 if math.isnan(a) and math.isnan(b) else math.inf
        else:
            rel = abs(b - a) if abs(a) < floor else abs(b - a) / abs(a)
        if rel > tolerance:
            bad.append(name)
        lines.append(
            f"| {name} | {a:.4g} | {b:.4g} | {100 * rel:.1f} %{' **over**' if rel > tolerance else ''} |"
        )
    lines += [
        "",
        f"{len(shipped) - len(bad)} of {len(shipped)} within tolerance"
        + (f"; over: {', '.join(bad)}" if bad else ""),
    ]
    return lines, bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="the remake's output folder (make_mini_model.sh OUT)")
    ap.add_argument("--model", help="the remake's model (default: RUN/allegro-fm-mini.nequip.zip)")
    ap.add_argument(
        "--shipped",
        default="allegro-fm-mini",
        help="the model to compare with (default: the shipped one)",
    )
    ap.add_argument(
        "--tolerance",
        type=float,
        default=0.05,
        help="largest relative difference allowed (default 0.05)",
    )
    ap.add_argument(
        "--floor", type=float, default=1e-9, help="compare absolutely below this shipped value"
    )
    ap.add_argument(
        "--bench", action="store_true", help="also the bench's quick EOS and tensile experiments"
    )
    ap.add_argument("-o", "--output", type=Path, help="also write the table (markdown) here")
    args = ap.parse_args(argv)
    run = args.run
    remake = args.model or str(run / "allegro-fm-mini.nequip.zip")
    heldout, data = run / "heldout-round4.h5", run / "aligned-round4.h5"
    for p in (heldout, data, run / "round4" / "settings.json"):
        if not p.exists():
            raise SystemExit(f"check_remake: {p} is missing: has the remake in {run} finished?")
    try:
        remake = str(resolve_model(remake))
    except FileNotFoundError as exc:
        raise SystemExit(f"check_remake: {exc}: has the remake in {run} finished?") from exc
    test = run_test_indices(run / "round4", data)
    values: dict[str, dict[str, float]] = {}
    for tag, model in (("shipped", args.shipped), ("remake", remake)):
        pot = load_potential(model)
        rows = error_rows("held out", pot, heldout, "source")
        rows.update(error_rows("held out", pot, heldout, "key"))
        rows.update(
            {
                k: v
                for k, v in error_rows("test split", pot, data, "source", test).items()
                if "force RMSE" in k
            }
        )
        if args.bench:
            with tempfile.TemporaryDirectory(prefix=f"check-remake-{tag}-") as tmp:
                rows.update(bench_rows(model, Path(tmp)))
        values[tag] = rows
    lines, bad = compare(values["shipped"], values["remake"], args.tolerance, args.floor)
    lines = [
        f"shipped `{args.shipped}` vs remake `{remake}` (tolerance {100 * args.tolerance:g} %)",
        "",
        *lines,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        write_text_atomic(args.output, text)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
