"""The forgetting experiment of the model README: fine-tune the shipped model on one periodic family it was not
trained on, without and with model-labelled replay, and measure what is gained and what is lost.

    python packages/allegro-fm-model/scripts/replay_experiment.py [--family sodalite-SiO2] [--epochs 20] [-o runs/replay]
    # the model README's table: aragonite, 100 epochs, cosine rate, replay_fraction 2
    python packages/allegro-fm-model/scripts/replay_experiment.py --family aragonite --epochs 100 \
        --lr-schedule cosine --replay-fraction 2 -o runs/rx-ara-cos-rf2
    # the same through the TorchScript route, on the nequip 0.6 fixture (its elements: O Ca H Si C)
    python packages/allegro-fm-model/scripts/replay_experiment.py \
        --model packages/allegro-fm-model/tests/data/legacy/legacy-allegro-0.3.0.pth --family aragonite \
        --trained calcite portlandite quartz tobermorite-11A --epochs 150 --lr 2e-3 --replay-fraction 2 \
        -o runs/rx-legacy-ara-150

1. The family's frames of the mini label store (datasets/allegro-fm-mini/data/pbe/FAMILY.extxyz.xz, level
   PBE~SevenNet-0, not in the shipped model's training set) are split 2/3 fine-tuning, 1/3 held out.
2. "Others": 6 frames of each of six families the model was trained on (real labels of the store).
3. Replay: ``make_replay`` on the first frame of each of eight trained families (rattled and strained copies), labelled
   by the shipped model itself (its level of theory, so no alignment is needed).
4. ``allegro-fm finetune`` twice with the same settings: without replay, and with replay (replay_fraction 1: as many
   replay frames as new ones in every epoch).
5. ``allegro-fm evaluate --before allegro-fm-mini --after best.ckpt`` on the held-out family frames and the others.
6. The forgetting curve: both runs' force RMSE by epoch on the family's validation frames and on the replay set's
   held-out frames (the run without replay watches them with replay_fraction 0), forgetting-curve.png / .csv.
Prints both forgetting tables and a summary; writes them under -o.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
STORE = ROOT / "datasets" / "allegro-fm-mini" / "data" / "pbe"
TRAINED = (
    "calcite",
    "portlandite",
    "quartz",
    "tobermorite-11A",
    "water",
    "lime",
    "silicon",
    "cristobalite",
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--model", default="allegro-fm-mini", help="the starting model (file or shipped name)"
    )
    ap.add_argument("--family", default="sodalite-SiO2")
    ap.add_argument(
        "--trained",
        nargs="+",
        default=list(TRAINED),
        help="families the model knows (others, replay)",
    )
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument(
        "--energy-weight", type=float, default=8.0, help="loss weights (default: the paper's 8:1:1)"
    )
    ap.add_argument("--force-weight", type=float, default=1.0)
    ap.add_argument("--replay-fraction", type=float, default=1.0)
    ap.add_argument("--lr-schedule", default="plateau", choices=("plateau", "cosine"))
    ap.add_argument("--freeze", nargs="*", default=[], help="groups to freeze in both runs")
    ap.add_argument(
        "--modes",
        nargs="+",
        default=["no-replay", "replay"],
        choices=("no-replay", "replay"),
        help="which runs (a quick screen: no-replay alone)",
    )
    ap.add_argument("-o", "--out", default=str(ROOT / "runs" / "replay-experiment"))
    args = ap.parse_args(argv)

    import ase.io
    import numpy as np
    import tea_align
    from allegro_fm_model.forgetting import forgetting, forgetting_curve, plot_curves, write_report
    from allegro_fm_model.replay import make_replay

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if Path(
        args.model
    ).exists():  # a file: absolute (the TOML files below resolve paths against their folder)
        args.model = str(Path(args.model).resolve())
    frames = ase.io.read(STORE / f"{args.family}.extxyz.xz", ":")
    level = frames[0].info["level_of_theory"]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(frames))
    n_ft = (2 * len(frames)) // 3
    ase.io.write(out / "family_ft.extxyz", [frames[i] for i in sorted(order[:n_ft])])
    ase.io.write(out / "family_test.extxyz", [frames[i] for i in sorted(order[n_ft:])])
    others = [a for f in args.trained[:6] for a in ase.io.read(STORE / f"{f}.extxyz.xz", ":6")]
    ase.io.write(out / "others.extxyz", others)
    for name in ("family_ft", "family_test", "others"):
        tea_align.convert([f"{out / name}.extxyz,level={level},name={name}"], out / f"{name}.h5")
    starts = [ase.io.read(STORE / f"{f}.extxyz.xz", 0) for f in args.trained]
    make_replay(args.model, starts, out / "replay.h5", progress=False)

    reports = {}
    for mode in args.modes:
        run = out / mode
        toml = out / f"{mode}.toml"
        toml.write_text(
            f'[train]\ndataset = "{out / "family_ft.h5"}"\nrun_dir = "{run}"\ninit_from = "{args.model}"\n'
            f"max_epochs = {args.epochs}\nbatch_size = 2\nlearning_rate = {args.lr}\nval_fraction = 0.15\n"
            "test_fraction = 0.0\nema_decay = 0.9\n"
            f"energy_weight = {args.energy_weight}\nforce_weight = {args.force_weight}\n"
            f'freeze = {json.dumps(args.freeze)}\nlr_schedule = "{args.lr_schedule}"\n'
            # without replay the replay set is only watched (replay_fraction 0): the forgetting curve of both runs
            + f'replay = "{out / "replay.h5"}"\n'
            + f"replay_fraction = {args.replay_fraction if mode == 'replay' else 0}\n"
        )
        shutil.rmtree(run, ignore_errors=True)  # a fresh run each time (same seed, same settings)
        subprocess.run(
            [sys.executable, "-m", "allegro_fm_model.cli", "finetune", str(toml)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        tuned = run / "best.ckpt" if (run / "best.ckpt").exists() else run / "best.pth"
        rep = forgetting(args.model, tuned, [out / "family_test.h5", out / "others.h5"])
        write_report(rep, out / f"forgetting-{mode}.md")
        reports[mode] = rep
        print(f"\n## {mode}\n\n{rep.markdown()}", flush=True)
    # both runs' curves when both folders exist (one of them may come from an earlier invocation with --modes)
    curves = {m: forgetting_curve(out / m) for m in ("no-replay", "replay") if (out / m).is_dir()}
    plot_curves(curves, out / "forgetting-curve.png")
    rows = ["mode,epoch,family_val_force_rmse_meV,replay_heldout_force_rmse_meV"]
    rows += [
        f"{m},{e},{a:.3f},{b:.3f}"
        for m, c in curves.items()
        for e, a, b in zip(c.epochs, c.new, c.replay)
    ]
    (out / "forgetting-curve.csv").write_text("\n".join(rows) + "\n")
    for m, c in curves.items():
        print(
            f"forgetting curve, {m}: replay held-out force RMSE by epoch {c.replay[0]:.1f} (epoch {c.epochs[0]}) -> "
            f"{max(c.replay):.1f} (max) -> {c.replay[-1]:.1f} (epoch {c.epochs[-1]}) meV/A"
        )
    print("\n| fine-tuning | family held-out force RMSE (meV/A) | others force RMSE (meV/A) |")
    print("|---|---|---|")
    first = next(iter(reports.values())).rows()
    print(
        f"| none (the starting model) | {first[0]['forces_before']:.1f} | {first[1]['forces_before']:.1f} |"
    )
    for mode, rep in reports.items():
        r = rep.rows()
        print(
            f"| {mode} | {r[0]['forces_after']:.1f} ({r[0]['forces_before'] / r[0]['forces_after']:.2f}x lower) | "
            f"{r[1]['forces_after']:.1f} ({100 * (r[1]['forces_after'] / r[1]['forces_before'] - 1):+.1f} %) |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
