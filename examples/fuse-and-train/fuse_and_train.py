"""Fuse two datasets at different levels of theory with tea-align, then train a tiny Allegro model on the result.

    python examples/fuse-and-train/fuse_and_train.py [-o runs/fuse-and-train] [--frames 24] [--epochs 20]

The two inputs are written in the public formats the real data comes in: an MPtrj JSON (periodic crystals, a
PBE-like level "S") and a SPICE HDF5 (molecules, an all-electron-like level "T"), plus anchor frames computed at
both levels. Their labels come from tea-align's synthetic two-level model (one Morse pair energy seen through two
invented levels with different per-element references and scales), so the alignment has a known answer; for your
own data, replace the three files with your MPtrj/SPICE downloads and anchors. Then: ``tea-align fit`` and
``apply`` (Python API), training with allegro-fm-model's tiny preset, and the test errors per source.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tea_align
from allegro_fm_model import load_potential
from allegro_fm_model.evaluate import evaluate
from allegro_fm_model.export import package_model
from allegro_fm_model.training import TrainSettings, train
from tea_align import synthetic


def main(argv: list[str] | None = None) -> dict:
    """Run the example; returns {"alignment": Alignment, "errors": Errors, "model": Path}."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default="runs/fuse-and-train")
    ap.add_argument("--frames", type=int, default=24, help="crystals and molecules each")
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    files = synthetic.make_demo_data(
        out, n_crystals=args.frames, n_molecules=args.frames, n_anchors=10, seed=0
    )
    print(
        f"inputs: {files['periodic'].name} (MPtrj JSON), {files['molecules'].name} (SPICE HDF5), "
        f"{files['anchors'].name} (anchors at both levels)"
    )
    data = [
        f"{files['periodic']},level={synthetic.LEVEL_S}",
        f"{files['molecules']},level={synthetic.LEVEL_T}",
    ]
    alignment = tea_align.fit([files["anchors"]], data, target_level=synthetic.LEVEL_T)
    ls = alignment.levels[synthetic.LEVEL_S]
    print(
        f"TEA onto {synthetic.LEVEL_T!r}: scale {ls.scale:.4f} (exact {synthetic.ALPHA}), anchor RMSE "
        f"{1000 * ls.anchor_rmse_raw:.0f} -> {1000 * ls.anchor_rmse_aligned:.3f} meV/atom"
    )
    aligned = out / "aligned.h5"
    tea_align.apply(alignment, data, aligned)
    run = train(
        TrainSettings(
            dataset=str(aligned),
            run_dir=str(out / "run"),
            preset="tiny",
            max_epochs=args.epochs,
            batch_size=2,
            learning_rate=1e-2,
            accelerator="cpu",
            devices=1,
            val_fraction=0.2,
            test_fraction=0.1,
            lr_patience=2,
        )
    )
    model = package_model(run / "best.ckpt", out / "model.nequip.zip")
    errors = evaluate(load_potential(model), str(aligned))
    print(errors.markdown())
    return {"alignment": alignment, "errors": errors, "model": model}


if __name__ == "__main__":
    main()
