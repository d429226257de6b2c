"""Shallow-ensemble heads (issue 32): each head is exactly the model with its readout weight moved by the head's delta
(float64, 1e-12), the ensemble's mean is the model itself, the bootstrap fit is the least-squares solution of the
frames' linear design, and the calibration makes the per-atom deviation's RMS equal the force error's."""

from __future__ import annotations

import copy

import ase.io
import numpy as np
import pytest
from allegro_fm_model import AllegroFMCalculator, AllegroPotential, build_model, tiny_preset
from allegro_fm_model.heads import (
    Heads,
    HeadsPotential,
    _design,
    _readout,
    calibrate,
    fit_heads,
    load_heads_potential,
)
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

SPECIES = ("H", "C", "O", "Si", "Ca")


def _model(seed=5):
    import torch

    torch.manual_seed(0)
    model = build_model(tiny_preset(), SPECIES, dtype="float64", seed=seed)
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(0.3 * torch.randn_like(prm))
    return model


def _shifted(model, delta):
    """A copy of ``model`` whose readout weight is moved by ``delta``: what a head claims to be."""
    import torch

    m = copy.deepcopy(model)
    lin, _ = _readout(m.model.func)
    with torch.no_grad():
        lin.weight += torch.as_tensor(delta[:, None])
    return AllegroPotential(m, SPECIES, cutoff=5.2)


def _frames(n, seed=0):
    out = []
    for k in range(n):
        a = bulk("CaO", "rocksalt", a=4.8, cubic=True) * (2, 1, 1)
        a.symbols[[1 + k % 3]] = "Si"
        a.rattle(0.08, seed=seed + k)
        out.append(a)
    return out


def test_each_head_is_the_model_with_its_readout_moved():
    model = _model()
    d = len(_readout(model.model.func)[0].weight)
    deltas = np.random.default_rng(1).normal(0, 0.3, (3, d))
    deltas -= deltas.mean(axis=0)
    hp = HeadsPotential(copy.deepcopy(model), SPECIES, 5.2, Heads(deltas, "", 1.0, {}))
    a = _frames(1)[0]
    a.calc = AllegroFMCalculator(hp)
    f = a.get_forces()
    base = a.copy()
    base.calc = AllegroFMCalculator(AllegroPotential(model, SPECIES, cutoff=5.2))
    np.testing.assert_allclose(f, base.get_forces(), atol=1e-12)  # the mean is the model
    members = []
    for k in range(3):
        b = a.copy()
        b.calc = AllegroFMCalculator(_shifted(model, deltas[k]))
        members.append(b.get_forces())
    members = np.array(members)
    assert np.abs(members - f).max() > 1e-2
    by_hand = np.sqrt(((members - members.mean(0)) ** 2).sum(axis=2).mean(axis=0))
    np.testing.assert_allclose(a.calc.get_property("force_deviation", a), by_hand, atol=1e-12)
    hp.members_wanted = False  # the engine's off-steps: the model's forces, no members
    a.calc = AllegroFMCalculator(hp)
    np.testing.assert_allclose(a.get_forces(), f, atol=1e-12)
    assert "force_deviation" not in a.calc.results


def test_the_fit_recovers_a_known_readout_and_the_calibration_holds():
    model = _model()
    pot = AllegroPotential(model, SPECIES, cutoff=5.2)
    d = len(_readout(model.model.func)[0].weight)
    true = np.random.default_rng(2).normal(0, 0.2, d)
    teacher = _shifted(model, true)
    rng = np.random.default_rng(3)
    frames = []
    for a in _frames(7):
        a.calc = AllegroFMCalculator(teacher)
        e, f = a.get_potential_energy(), a.get_forces()
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=e, forces=f + rng.normal(0, 0.02, f.shape))
        frames.append(b)
    # noiseless labels of the teacher: the frames' linear design reproduces them with the teacher's readout, and the
    # least-squares readout fits them exactly (the design may have a null space: compare predictions, not weights)
    rows, rhs = [], []
    for a in frames[:3]:
        c = a.copy()
        c.calc = SinglePointCalculator(
            c, energy=a.get_potential_energy(), forces=_forces(teacher, a)
        )
        fd = _design(pot, c)
        rows += [fd.g[None], fd.b]
        rhs += [[fd.e_res], fd.f_res]
    x, y = np.concatenate(rows), np.concatenate(rhs)
    np.testing.assert_allclose(x @ true, y, atol=1e-8)
    sol = np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(x @ sol, y, atol=1e-8)
    heads = fit_heads(pot, frames[:5], frames[5:], n_heads=4, seed=0, progress=False)
    assert heads.deltas.shape == (4, d)
    np.testing.assert_allclose(heads.deltas.sum(axis=0), 0, atol=1e-12)
    hp = HeadsPotential(copy.deepcopy(model), SPECIES, 5.2, heads)
    c = calibrate(hp, frames[5:])
    rms_d, rms_e = np.sqrt((c.fdev**2).mean()), np.sqrt((c.error**2).mean())
    assert rms_d == pytest.approx(rms_e, rel=1e-6)  # the scale's definition, through another path
    assert heads.meta["calibration_rms_force_error_eV_A"] == pytest.approx(rms_e, rel=1e-9)


def _forces(pot, a):
    b = a.copy()
    b.calc = AllegroFMCalculator(pot)
    return b.get_forces()


def test_heads_file_round_trip_and_refusals(tmp_path):
    h = Heads(np.array([[1.0, -2.0], [-1.0, 2.0]]), "abc", 2.5, {"heads": 2})
    g = Heads.load(h.save(tmp_path / "h.npz"))
    np.testing.assert_array_equal(g.deltas, h.deltas)
    assert (g.model_sha256, g.scale, g.meta["heads"]) == ("abc", 2.5, 2)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="bad.npz: not a heads file"):
        Heads.load(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="another model file"):
        load_heads_potential("allegro-fm-mini", tmp_path / "h.npz")


def test_the_heads_command_on_the_shipped_model(tmp_path):
    """``allegro-fm heads`` on the shipped model: 8-atom silicon cells labelled by the model itself plus noise (0.05
    eV/A), five to fit, two to check."""
    from allegro_fm_model.cli import main

    rng = np.random.default_rng(0)
    frames = []
    for k in range(7):
        a = bulk("Si", "diamond", a=5.43, cubic=True)
        a.rattle(0.05 + 0.02 * k, seed=k)
        a.calc = AllegroFMCalculator("allegro-fm-mini")
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f + rng.normal(0, 0.05, f.shape))
        frames.append(a)
    ase.io.write(tmp_path / "train.extxyz", frames[:5])
    ase.io.write(tmp_path / "check.extxyz", frames[5:])
    out = tmp_path / "mini.heads.npz"
    args = ["heads", "allegro-fm-mini", "--train", str(tmp_path / "train.extxyz")]
    args += ["--heads", "3", "--check", str(tmp_path / "check.extxyz"), "-o", str(out), "-q"]
    assert main(args) == 0
    pot = load_heads_potential("allegro-fm-mini", out)
    assert len(pot.heads.deltas) == 3 and pot.heads.scale > 0
    assert (tmp_path / "mini.heads.calibration.png").stat().st_size > 1000
    assert "| all |" in (tmp_path / "mini.heads.calibration.md").read_text()


def test_the_shipped_heads_belong_to_the_shipped_model_and_average_to_it():
    from allegro_fm_model.loading import builtin_heads_path

    pot = load_heads_potential("allegro-fm-mini", builtin_heads_path("allegro-fm-mini"))
    assert len(pot.heads.deltas) == 4 and pot.heads.meta["train_frames"] == 108
    a = bulk("CaO", "rocksalt", a=4.81, cubic=True) * (2, 2, 2)
    a.rattle(0.05, seed=1)
    a.calc = AllegroFMCalculator(pot)
    f = a.get_forces()
    fdev = a.calc.get_property("force_deviation", a)
    b = a.copy()
    b.calc = AllegroFMCalculator("allegro-fm-mini")
    np.testing.assert_allclose(
        f, b.get_forces(), atol=1e-5
    )  # float32: the mean is the model itself
    assert 0.01 < fdev.mean() < 5.0
