"""``allegro-fm finetune`` on a nequip 0.6.x deployed file (the published weights' format), fine-tuned as TorchScript."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import ase.io
import numpy as np
import pytest
import tea_align
import torch
from allegro_fm_model import load_potential, read_legacy_metadata
from allegro_fm_model.cli import main
from allegro_fm_model.legacy import load_legacy_module

MODEL = Path(__file__).parent / "data" / "legacy" / "legacy-allegro-0.3.0.pth"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """New data for the fixture model: calcite and portlandite rattled by 0.12 A (more than it was trained on),
    labelled by the shipped mini model (energy, forces, stress): a target system to fine-tune on."""
    from allegro_fm_model import AllegroFMCalculator
    from ase.calculators.singlepoint import SinglePointCalculator

    d = tmp_path_factory.mktemp("ft")
    calc = AllegroFMCalculator(load_potential("allegro-fm-mini"))
    base = ase.io.read(MODEL.parent / "structures.extxyz", ":2")
    rng = np.random.default_rng(5)
    frames = []
    for k in range(12):
        a = base[k % 2].repeat((2, 2, 1)) if k % 2 == 0 else base[k % 2].copy()
        a.positions += rng.normal(0, 0.12, a.positions.shape)
        a.calc = calc
        e, f, st = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=st)
        frames.append(a)
    ase.io.write(d / "ft.extxyz", frames)
    tea_align.convert([f"{d / 'ft.extxyz'},level=L,name=ft"], d / "ft.h5")
    return d / "ft.h5"


def _toml(folder: Path, dataset: Path, epochs: int) -> Path:
    f = folder / "ft.toml"
    f.write_text(
        f'[train]\ndataset = "{dataset}"\nrun_dir = "run"\ninit_from = "{MODEL}"\nmax_epochs = {epochs}\n'
        'batch_size = 3\nlearning_rate = 0.0005\nval_fraction = 0.25\ntest_fraction = 0.0\nfreeze = ["embedding"]\n'
    )
    return f


def test_finetune_lowers_the_loss_keeps_frozen_groups_and_resumes(dataset, tmp_path):
    before = MODEL.read_bytes()
    assert main(["finetune", str(_toml(tmp_path, dataset, 4))]) == 0
    run = tmp_path / "run"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3", "4"]
    val = [float(r["val_loss"]) for r in rows]
    print(f"validation loss by epoch: {val}")
    # the loss falls: by 2.5 % or more at its best and still below the start at the end (the labels are the shipped mini
    # model's; measured with v2.2's: 4.50 -> 4.38 -> 4.30 -> 4.26 -> 4.25; with v2.3's: 4.01 -> 3.94 -> 3.90 -> 3.890 ->
    # 3.893, the last epoch flat within 0.1 %; at learning rate 0.002 it fell in one epoch and rose again: hence 0.0005)
    assert val[1] < val[0] and min(val) < 0.975 * val[0] and val[-1] < val[0]

    orig, _ = load_legacy_module(MODEL, freeze=False)
    tuned, meta = load_legacy_module(run / "last.pth", freeze=False)
    p0, p1 = dict(orig.named_parameters()), dict(tuned.named_parameters())
    assert p0.keys() == p1.keys()
    frozen = [
        k
        for k in p0
        if k.split("func.", 1)[1].startswith(("radial_basis.", "typeembed.", "allegro.latents.0."))
    ]
    assert (
        len(frozen) == 6
    )  # Bessel weights, type embedding + its basis MLP, the two-body latent MLP (3 layers)
    # parameters that get a gradient from the loss (Allegro's last-layer tensor linear feeds nothing: none)
    from allegro_fm_model.legacy_finetune import _graphs, _loss, _set_modes
    from allegro_fm_model.training import TrainSettings

    _set_modes(orig, True)
    loss, _ = _loss(
        orig,
        _graphs(str(dataset), tuple(meta["type_names"].split()), 5.2, [0])[0],
        TrainSettings(dataset=""),
        torch.float64,
        "cpu",
    )
    loss.backward()
    learning = {k for k, p in p0.items() if p.grad is not None and p.grad.abs().max() > 0}
    assert len(learning) >= len(p0) - 2
    for k in p0:
        same = torch.equal(p0[k].detach(), p1[k].detach())
        if k in frozen:
            assert same, f"frozen {k} changed"
        elif k in learning:
            assert not same, f"{k} was not trained"

    # the result is a deployed file of the same format and metadata (runs wherever the original runs)
    m0, m1 = read_legacy_metadata(MODEL), read_legacy_metadata(run / "best.pth")
    assert {k: m1[k] for k in ("nequip_version", "type_names", "r_max", "model_dtype")} == {
        k: m0[k] for k in ("nequip_version", "type_names", "r_max", "model_dtype")
    }
    with zipfile.ZipFile(run / "best.pth") as zf:
        note = json.loads(
            zf.read(next(n for n in zf.namelist() if n.endswith("extra/allegro_fm_finetune")))
        )
    assert note["source"] == MODEL.name and note["frozen"] == ["embedding"]
    a = ase.io.read(MODEL.parent / "structures.extxyz", 1)
    from allegro_fm_model import AllegroFMCalculator

    e = []
    for path in (MODEL, run / "best.pth"):
        b = a.copy()
        b.calc = AllegroFMCalculator(load_potential(path))
        e.append(b.get_potential_energy())
    assert abs(e[1] - e[0]) > 1e-4 and np.isfinite(e).all()

    # resume: one more epoch continues from the checkpoint, not from the start
    assert main(["finetune", str(_toml(tmp_path, dataset, 5))]) == 0
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    assert MODEL.read_bytes() == before  # the published file is never modified


def test_finetune_refuses_unknown_groups_and_elements(dataset, tmp_path, capsys):
    f = _toml(tmp_path, dataset, 1)
    f.write_text(f.read_text().replace('freeze = ["embedding"]', 'freeze = ["nonsense"]'))
    assert main(["finetune", str(f)]) == 2
    assert "freeze ['nonsense'] matched no parameter" in capsys.readouterr().err
    frames = [ase.io.read(MODEL.parent / "train.extxyz", 0)]
    frames[0].symbols[0] = "N"  # not in the file's elements
    ase.io.write(tmp_path / "n.extxyz", frames * 4)
    tea_align.convert([f"{tmp_path / 'n.extxyz'},level=L,name=n"], tmp_path / "n.h5")
    g = _toml(tmp_path, tmp_path / "n.h5", 1)
    assert main(["finetune", str(g)]) == 2
    assert "frame 0: atom 0: element 'N' is not known" in capsys.readouterr().err


def test_port_engine_trains_the_same_function_and_writes_the_original_format(dataset, tmp_path):
    """``--legacy-engine port``: the plain-PyTorch port trains the file's function (the starting validation loss equals
    the TorchScript engine's, and one epoch lands on the same loss to float32 round-off), frozen groups stay, and
    the output is the original format, which the port and the compiler read like the published file."""
    from allegro_fm_model.legacy_port import PortedLegacyPotential

    runs = {}
    for engine in ("torchscript", "port"):
        d = tmp_path / engine
        d.mkdir()
        assert main(["finetune", str(_toml(d, dataset, 1)), "--legacy-engine", engine]) == 0
        runs[engine] = [
            float(r["val_loss"]) for r in csv.DictReader(open(d / "run" / "metrics.csv"))
        ]
    print(f"validation loss, TorchScript engine {runs['torchscript']}, port engine {runs['port']}")
    assert runs["port"][0] == pytest.approx(runs["torchscript"][0], rel=1e-6)
    assert runs["port"][1] == pytest.approx(runs["torchscript"][1], rel=1e-3)
    assert runs["port"][1] < runs["port"][0]

    out = tmp_path / "port" / "run" / "best.pth"
    orig, _ = load_legacy_module(MODEL, freeze=False)
    tuned, _ = load_legacy_module(out, freeze=False)
    p0, p1 = dict(orig.named_parameters()), dict(tuned.named_parameters())
    for k in p0:
        local = k.split("func.", 1)[1]
        if (
            local == "allegro.linears.1.w"
        ):  # the last layer's tensor linear feeds nothing: no gradient
            continue
        frozen = local.startswith(("radial_basis.", "typeembed.", "allegro.latents.0."))
        assert torch.equal(p0[k], p1[k]) == frozen, k
    note = json.loads(
        zipfile.ZipFile(out).read(
            next(
                n
                for n in zipfile.ZipFile(out).namelist()
                if n.endswith("extra/allegro_fm_finetune")
            )
        )
    )
    assert note["engine"] == "port"
    a = ase.io.read(MODEL.parent / "structures.extxyz", 1)
    ts, port = load_potential(out), PortedLegacyPotential(out)
    types = ts.types_of(a.get_chemical_symbols())
    from allegro_fm_model import periodic_edges

    ei, sh = periodic_edges(a.positions, np.array(a.cell), a.pbc, ts.cutoff)
    r1 = ts.compute(a.positions, types, ei, len(a), sh)
    r2 = port.compute(a.positions, types, ei, len(a), sh)
    assert r2.energy == pytest.approx(r1.energy, rel=1e-6)
    np.testing.assert_allclose(r2.forces, r1.forces, atol=1e-5)
