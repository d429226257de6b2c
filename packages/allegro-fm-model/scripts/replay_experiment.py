"""The forgetting experiment of the model README: fine-tune the shipped model on one periodic family it was not
trained on, without and with model-labelled replay, and measure what is gained and what is lost.

    python packages/allegro-fm-model/scripts/replay_experiment.py [--family sodalite-SiO2] [--epochs 20] [-o runs/replay]

1. The family's frames of the mini label store (datasets/allegro-fm-mini/data/pbe/FAMILY.extxyz.xz, level
   PBE~SevenNet-0, not in the shipped model's training set) are split 2/3 fine-tuning, 1/3 held out.
2. "Others": 6 frames of each of six families the model was trained on (real labels of the store).
3. Replay: ``make_replay`` on the first frame of each of eight trained families (rattled and strained copies), labelled
   by the shipped model itself (its level of theory, so no alignment is needed).
4. ``allegro-fm finetune`` (nequip route) twice with the same settings: without replay, and with replay
   (replay_fraction 1: as many replay frames as new ones in every epoch).
5. ``allegro-fm evaluate --before allegro-fm-mini --after best.ckpt`` on the held-out family frames and the others.
Prints both forgetting tables and a summary; writes them under -o.
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--family", default="sodalite-SiO2")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("-o", "--out", default=str(ROOT / "runs" / "replay-experiment"))
    args = ap.parse_args(argv)

    import ase.io
    import numpy as np
    import tea_align
    from allegro_fm_model.forgetting import forgetting, write_report
    from allegro_fm_model.replay import make_replay

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = ase.io.read(STORE / f"{args.family}.extxyz.xz", ":")
    level = frames[0].info["level_of_theory"]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(frames))
    n_ft = (2 * len(frames)) // 3
    ase.io.write(out / "family_ft.extxyz", [frames[i] for i in sorted(order[:n_ft])])
    ase.io.write(out / "family_test.extxyz", [frames[i] for i in sorted(order[n_ft:])])
    others = [a for f in TRAINED[:6] for a in ase.io.read(STORE / f"{f}.extxyz.xz", ":6")]
    ase.io.write(out / "others.extxyz", others)
    for name in ("family_ft", "family_test", "others"):
        tea_align.convert([f"{out / name}.extxyz,level={level},name={name}"], out / f"{name}.h5")
    starts = [ase.io.read(STORE / f"{f}.extxyz.xz", 0) for f in TRAINED]
    make_replay("allegro-fm-mini", starts, out / "replay.h5", progress=False)

    reports = {}
    for mode in ("no-replay", "replay"):
        run = out / mode
        toml = out / f"{mode}.toml"
        toml.write_text(
            f'[train]\ndataset = "{out / "family_ft.h5"}"\nrun_dir = "{run}"\ninit_from = "allegro-fm-mini"\n'
            f"max_epochs = {args.epochs}\nbatch_size = 2\nlearning_rate = {args.lr}\nval_fraction = 0.15\n"
            "test_fraction = 0.0\nema_decay = 0.9\n"
            + (
                f'replay = "{out / "replay.h5"}"\nreplay_fraction = 1.0\n'
                if mode == "replay"
                else ""
            )
        )
        if not (run / "best.ckpt").exists() or (run / "last.ckpt").exists():
            subprocess.run(
                [sys.executable, "-m", "allegro_fm_model.cli", "finetune", str(toml)], check=True
            )
        rep = forgetting(
            "allegro-fm-mini", run / "best.ckpt", [out / "family_test.h5", out / "others.h5"]
        )
        write_report(rep, out / f"forgetting-{mode}.md")
        reports[mode] = rep
        print(f"\n## {mode}\n\n{rep.markdown()}", flush=True)
    print("\n| fine-tuning | family held-out force RMSE (meV/A) | others force RMSE (meV/A) |")
    print("|---|---|---|")
    first = reports["no-replay"].rows()
    print(
        f"| none (shipped model) | {first[0]['forces_before']:.1f} | {first[1]['forces_before']:.1f} |"
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
