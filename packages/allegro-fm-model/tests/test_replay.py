"""Replay fine-tuning (``replay.py``, ``allegro-fm make-replay``), replay mixing in ``allegro-fm finetune`` and the
forgetting report (``allegro-fm evaluate --before --after``), on the nequip 0.6 fixture (TorchScript route: fast)."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import ase.io
import numpy as np
import pytest
import tea_align
from allegro_fm_model import AllegroFMCalculator, load_potential
from allegro_fm_model.cli import main
from allegro_fm_model.replay import make_replay

DATA = Path(__file__).parent / "data" / "legacy"
MODEL = DATA / "legacy-allegro-0.3.0.pth"


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    d = tmp_path_factory.mktemp("replay")
    starts = ase.io.read(DATA / "structures.extxyz", ":")
    starts[0].info["level_of_theory"] = (
        "PBE"  # labels the structure carried are replaced, not mixed in
    )
    return make_replay(MODEL, starts, d / "replay.h5", copies=2, progress=False)


def test_make_replay_labels_with_the_model_at_its_level(replay, tmp_path):
    """Every frame's labels are the model's own predictions; the set records the model's level of theory (the
    fixture records none: "unknown") and names the model in its source; periodic cells get strained copies, the
    molecule does not."""
    pot = load_potential(MODEL)
    with tea_align.open_dataset(replay) as ds:
        assert ds.sources[0].level_of_theory == "unknown"
        assert ds.sources[0].name == f"replay-{MODEL.name}"
        # 3 structures x (1 + 2 rattles x 2 copies) + 2 periodic x 2 strained copies
        assert len(ds) == 3 * 5 + 2 * 2
        for i in (0, 7, len(ds) - 1):
            fr = ds[i]
            a = ase.Atoms(fr.symbols, fr.positions, cell=fr.cell, pbc=fr.pbc)
            a.calc = AllegroFMCalculator(pot)
            assert a.get_potential_energy() == pytest.approx(fr.energy, abs=1e-5)
            np.testing.assert_allclose(a.get_forces(), fr.forces, atol=1e-5)
    with pytest.raises(ValueError, match="element 'N'"):
        bad = ase.Atoms("N2", positions=[[0, 0, 0], [1.1, 0, 0]])
        make_replay(MODEL, [bad], tmp_path / "x.h5", progress=False)


def _dataset(path: Path, level: str) -> Path:
    """New data for the fixture: rattled calcite labelled by the shipped mini model at ``level``."""
    from ase.calculators.singlepoint import SinglePointCalculator

    calc = AllegroFMCalculator(load_potential("allegro-fm-mini"))
    base = ase.io.read(DATA / "structures.extxyz", 1)
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(8):
        a = base.copy()
        a.positions += rng.normal(0, 0.1, a.positions.shape)
        a.calc = calc
        e, f, st = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=st)
        frames.append(a)
    ase.io.write(path.with_suffix(".extxyz"), frames)
    tea_align.convert([f"{path.with_suffix('.extxyz')},level={level},name=new"], path)
    return path


def _toml(d: Path, dataset: Path, extra: str) -> Path:
    f = d / "ft.toml"
    f.write_text(
        f'[train]\ndataset = "{dataset}"\nrun_dir = "run"\ninit_from = "{MODEL}"\nmax_epochs = 2\nbatch_size = 4\n'
        f"learning_rate = 0.001\nval_fraction = 0.25\ntest_fraction = 0.0\n{extra}"
    )
    return f


def _atoms(fr):
    from ase.calculators.singlepoint import SinglePointCalculator

    a = ase.Atoms(fr.symbols, fr.positions, cell=fr.cell, pbc=fr.pbc)
    a.calc = SinglePointCalculator(a, energy=fr.energy, forces=fr.forces)
    return a


def test_replay_is_mixed_in_and_recorded_and_levels_are_checked(replay, tmp_path, capsys):
    """With replay the epochs hold the new frames and a fresh draw of replay frames (weight applied), the replay's
    held-out loss is logged every epoch and the output records what was replayed; a replay set at another level of
    theory than the new data is refused, naming both levels."""
    data = _dataset(tmp_path / "new.h5", "unknown")
    assert (
        main(
            [
                "finetune",
                str(
                    _toml(
                        tmp_path,
                        data,
                        f'replay = "{replay}"\nreplay_fraction = 0.5\nreplay_weight = 2.0\n',
                    )
                ),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert all(np.isfinite(float(r["replay_val_loss"])) for r in rows)
    with zipfile.ZipFile(tmp_path / "run" / "best.pth") as zf:
        note = json.loads(
            zf.read(next(n for n in zf.namelist() if n.endswith("extra/allegro_fm_finetune")))
        )
    assert note["replay"] == "replay.h5" and note["replay_weight"] == 2.0

    # a replay set at another (known) level than the new data: refused, naming both
    other, pbe_replay = _dataset(tmp_path / "pbe.h5", "PBE"), tmp_path / "r.h5"
    with tea_align.open_dataset(replay) as ds:
        frames = [ds[i] for i in range(4)]
    ase.io.write(tmp_path / "r.extxyz", [_atoms(f) for f in frames])
    tea_align.convert([f"{tmp_path / 'r.extxyz'},level=wB97M-D3(BJ),name=r"], pbe_replay)
    d2 = tmp_path / "refused"
    d2.mkdir()
    assert main(["finetune", str(_toml(d2, other, f'replay = "{pbe_replay}"\n'))]) == 2
    assert "'wB97M-D3(BJ)'" in capsys.readouterr().err


def test_forgetting_report_before_and_after(replay, tmp_path):
    """``allegro-fm evaluate --before --after`` on two datasets: a table of the errors before and after and a plot;
    the same model before and after changes nothing."""
    out = tmp_path / "report.md"
    assert (
        main(
            [
                "evaluate",
                str(replay),
                str(replay),
                "--before",
                str(MODEL),
                "--after",
                str(MODEL),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    text = out.read_text()
    assert "| replay.h5 |" in text and "+0.0 %" in text
    assert out.with_suffix(".png").stat().st_size > 1000


def test_nequip_route_mixes_replay_into_one_training_dataset(replay, tmp_path):
    """Through nequip (one training dataset): the new frames and a fixed draw of replay frames (each repeated
    replay_weight times) form one ``MixedDataset``; the replay's held-out frames are a second validation set."""
    from allegro_fm_model.data import MixedDataset
    from allegro_fm_model.training import TrainSettings, nequip_config

    data = _dataset(tmp_path / "new.h5", "unknown")
    s = TrainSettings(
        dataset=str(data),
        init_from="allegro-fm-mini",
        replay=str(replay),
        replay_fraction=0.5,
        replay_weight=2,
        val_fraction=0.25,
        test_fraction=0.0,
    )
    cfg = nequip_config(s)
    tr, val = cfg["data"]["train_dataset"], cfg["data"]["val_dataset"]
    assert tr["_target_"] == "allegro_fm_model.data.MixedDataset" and len(val) == 2
    new_idx, rep_idx = (p["indices"] for p in tr["parts"])
    assert len(new_idx) == 6 and len(rep_idx) == 2 * 3  # round(0.5 x 6) replay frames, each twice
    assert not set(rep_idx) & set(val[1]["indices"])  # held-out replay frames never train
    mixed = MixedDataset(tr["parts"], tr["type_names"])
    assert len(mixed) == 12
    with tea_align.open_dataset(replay) as ds:
        want = ds[rep_idx[0]]
    got = mixed[6]
    np.testing.assert_allclose(got["pos"].numpy(), want.positions)
    assert float(got["total_energy"]) == pytest.approx(want.energy)
    with pytest.raises(ValueError, match="repeat count"):
        nequip_config(TrainSettings(**{**s.__dict__, "replay_weight": 1.5}))
    # replay_fraction 0: the replay set only watched (the run without replay's forgetting curve), nothing mixed in
    watch = nequip_config(TrainSettings(**{**s.__dict__, "replay_fraction": 0.0}))["data"]
    assert watch["train_dataset"]["_target_"] == "allegro_fm_model.data.TeaAlignDataset"
    assert watch["train_dataset"]["indices"] == new_idx and len(watch["val_dataset"]) == 2


def test_forgetting_curve_from_both_routes_logs(replay, tmp_path):
    """The forgetting curve of a nequip 0.6 run (its metrics.csv: the force RMSE of the validation frames and of the
    replay's held-out frames, epoch 0 = the start, equal to evaluate's on those frames) and of a nequip run's CSV log
    (val0 / val1 in eV/A; epoch k of the log = after k+1 epochs; a resumed run's later version wins); plotted."""
    from allegro_fm_model.evaluate import evaluate
    from allegro_fm_model.forgetting import forgetting_curve, plot_curves
    from allegro_fm_model.training import split_indices

    data = _dataset(tmp_path / "new.h5", "unknown")
    toml = _toml(tmp_path, data, f'replay = "{replay}"\nreplay_fraction = 0\n')
    assert main(["finetune", str(toml)]) == 0
    c = forgetting_curve(tmp_path / "run")
    assert c.epochs == (0, 1, 2) and all(np.isfinite(c.new)) and all(np.isfinite(c.replay))
    with tea_align.open_dataset(data) as ds:
        val = split_indices(len(ds), 0.25, 0.0, 0)[1]
    start = evaluate(load_potential(MODEL), str(data), val)
    assert c.new[0] == pytest.approx(
        start.forces["all"], rel=1e-4
    )  # meV/A, the same frames as evaluate's
    assert c.replay[0] < 0.01  # the replay's labels are the model's own: round-off at the start
    assert (
        c.replay[-1] > 10 * c.replay[0]
    )  # it moves away from them (replay_fraction 0: watched, not trained)

    logs = tmp_path / "nq" / "logs"
    for v, rows in ((0, [(0, 0.5, 0.1), (1, 0.4, 0.2)]), (1, [(1, 0.3, 0.25), (2, 0.2, 0.3)])):
        (logs / f"version_{v}").mkdir(parents=True)
        lines = [
            "epoch,step,train_loss_epoch/forces_rmse,val0_epoch/forces_rmse,val1_epoch/forces_rmse"
        ]
        for e, a, b in rows:
            lines += [f"{e},{10 * e},0.9,,", f"{e},{10 * e},,{a},{b}"]
        (logs / f"version_{v}" / "metrics.csv").write_text("\n".join(lines) + "\n")
    n = forgetting_curve(tmp_path / "nq")
    assert (
        n.epochs == (1, 2, 3)
        and n.new == pytest.approx((500, 300, 200))
        and n.replay == pytest.approx((100, 250, 300))
    )
    png = plot_curves({"legacy": c, "nequip": n}, tmp_path / "curve.png", start=(600.0, 90.0))
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="no fine-tuning log"):
        forgetting_curve(tmp_path / "empty")
