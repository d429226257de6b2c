"""A tiny training run through nequip's workflow: the loss falls, and an interrupted run resumes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import tea_align
from allegro_fm_model.training import TrainSettings, train
from tea_align import synthetic


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    p = synthetic.make_demo_data(out, n_crystals=12, n_molecules=12, n_anchors=8, seed=4)
    data = [f"{p['periodic']},level={synthetic.LEVEL_S}", f"{p['molecules']},level={synthetic.LEVEL_T}"]
    al = tea_align.fit([p["anchors"]], data, target_level=synthetic.LEVEL_T)
    tea_align.apply(al, data, out / "aligned.h5")
    return out / "aligned.h5"


def _epochs(run: Path) -> dict[int, float]:
    rows = list(csv.DictReader(next(run.rglob("metrics.csv")).open()))
    return {int(r["epoch"]): float(r["train_loss_epoch/weighted_sum"]) for r in rows if r.get("train_loss_epoch/weighted_sum")}


def test_tiny_training_loss_falls_and_resumes(aligned, tmp_path):
    s = TrainSettings(dataset=str(aligned), run_dir=str(tmp_path / "run"), preset="tiny", max_epochs=3, batch_size=2,
                      learning_rate=1e-2, accelerator="cpu", devices=1, val_fraction=0.2, test_fraction=0.1)
    run = train(s)
    first = _epochs(run)
    assert sorted(first) == [0, 1, 2]
    # "interrupted" after 3 epochs: asking for 6 resumes from last.ckpt instead of starting again
    train(TrainSettings(**{**s.__dict__, "max_epochs": 6}))
    rows = list(csv.DictReader(next(run.rglob("version_1/metrics.csv")).open()))
    resumed = sorted({int(r["epoch"]) for r in rows if r.get("train_loss_epoch/weighted_sum")})
    # Lightning's last.ckpt is written after epoch 2's validation, so epoch 2 may be finished again
    assert resumed[0] in (2, 3) and resumed[-1] == 5 and 0 not in resumed
    losses = {**first, **{int(r["epoch"]): float(r["train_loss_epoch/weighted_sum"]) for r in rows
                          if r.get("train_loss_epoch/weighted_sum")}}
    print("train loss per epoch:", losses)
    assert losses[5] < 0.7 * losses[0]
    assert (run / "config.yaml").exists() and (run / "best.ckpt").exists()
