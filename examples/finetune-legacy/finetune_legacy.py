"""Fine-tune a nequip 0.6 file (the published Allegro-FM weights' format, e.g. afm256_01_HL.pt) on your own frames.

    python examples/finetune-legacy/finetune_legacy.py [MODEL.pt] [-o runs/finetune-legacy] [--epochs 4]

Without MODEL, the repository's small nequip 0.6.1 + Allegro 0.3.0 fixture stands in for the published file (same
format; packages/allegro-fm-model/tests/data/legacy). The new data: calcite and portlandite rattled by 0.12 A and
labelled by the shipped Allegro-FM-mini model, ingested with tea-align (its level of theory is declared as the
labelling model's). ``allegro-fm finetune`` trains the TorchScript file itself, the embedding frozen, and writes a
nequip 0.6 file that runs wherever the original ran (allegro-fm-md, the ASE calculator, pair_allegro); the force
error on the new frames is printed before and after.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ase.io
import numpy as np
import tea_align
from allegro_fm_model import AllegroFMCalculator, load_potential
from allegro_fm_model.cli import main as allegro_fm
from allegro_fm_model.evaluate import evaluate
from ase.calculators.singlepoint import SinglePointCalculator

FIXTURE = (
    Path(__file__).resolve().parents[2]
    / "packages/allegro-fm-model/tests/data/legacy/legacy-allegro-0.3.0.pth"
)


def _new_frames(structures: Path, out: Path, n: int) -> Path:
    """``n`` rattled copies of the fixture's calcite and portlandite cells labelled by the shipped mini model, as a
    tea-align dataset (energy eV, forces eV/A, stress)."""
    calc = AllegroFMCalculator("allegro-fm-mini")
    base = ase.io.read(structures, ":2")
    rng = np.random.default_rng(5)
    frames = []
    for k in range(n):
        a = base[k % 2].copy()
        a.positions += rng.normal(0, 0.12, a.positions.shape)
        a.calc = calc
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        frames.append(a)
    ase.io.write(out / "new.extxyz", frames)
    level = load_potential("allegro-fm-mini").level_of_theory
    tea_align.convert([f"{out / 'new.extxyz'},level={level},name=new"], out / "new.h5")
    return out / "new.h5"


def main(argv: list[str] | None = None) -> tuple[float, float]:
    """Run the example; returns the force RMSE (meV/A) on the new frames before and after fine-tuning."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=str(FIXTURE))
    ap.add_argument("-o", "--output", default="runs/finetune-legacy")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args(argv)
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = _new_frames(FIXTURE.parent / "structures.extxyz", out, args.frames)
    settings = out / "finetune.toml"
    settings.write_text(
        f'[train]\ndataset = "{data}"\nrun_dir = "{out / "run"}"\ninit_from = "{Path(args.model).resolve()}"\n'
        f"max_epochs = {args.epochs}\nbatch_size = 3\nlearning_rate = 0.0005\nval_fraction = 0.25\n"
        'test_fraction = 0.0\nfreeze = ["embedding"]\n'
    )
    before = evaluate(load_potential(args.model), str(data), refit_offsets=True).forces["all"]
    if allegro_fm(["finetune", str(settings), "-q"]) != 0:
        raise SystemExit("fine-tuning failed")
    after = evaluate(
        load_potential(out / "run" / "last.pth"), str(data), refit_offsets=True
    ).forces["all"]
    print(
        f"force RMSE on the new frames: {before:.1f} -> {after:.1f} meV/A ({out / 'run' / 'last.pth'})"
    )
    return before, after


if __name__ == "__main__":
    main()
