"""A model knows the level of theory of its energies: recorded in every file kind, checked against the data's level by
evaluate and finetune (exit 2 naming both levels), with per-element offsets refitted on request; and the ASE calculator
takes a model name and pickles."""

from __future__ import annotations

import pickle

import ase.io
import numpy as np
import pytest
import tea_align
from allegro_fm_model import AllegroFMCalculator, load_potential
from allegro_fm_model.cli import main
from allegro_fm_model.evaluate import evaluate, fit_energy_offsets
from allegro_fm_model.provenance import (
    LEVEL_KEY,
    UNKNOWN_LEVEL,
    LevelMismatchError,
    dataset_level,
    model_level,
    write_zip_level,
)
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

MINI_LEVEL = "PBE~SevenNet-0"
SPICE_LEVEL = "wB97M-D3(BJ)/def2-TZVPPD"
#: planted per-element offsets (eV) between the "SPICE-level" labels and the model's level: an all-electron level's
#: atoms sit hundreds to thousands of eV below a PAW level's, which is what the 748 670 meV/atom error of the issue was
OFFSETS = {"H": -13.6, "C": -1027.4, "O": -2043.9, "Ca": -18500.2}


@pytest.fixture(scope="module")
def frames():
    """CaO cells and methanol molecules, rattled, with the shipped model's energies and forces as labels."""
    calc = AllegroFMCalculator("allegro-fm-mini")
    out = []
    for k in range(4):
        a = (
            bulk("CaO", "rocksalt", a=4.81) * (2, 1, 1)
            if k % 2 == 0
            else molecule("CH3OH", vacuum=4.0)
        )
        a.rattle(0.05, seed=k)
        a.calc = calc
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        out.append(a)
    return out


def _dataset(folder, frames, level, offsets=None):
    """The frames converted by tea-align as data at ``level``, energies shifted by the per-element ``offsets``."""
    shifted = []
    for a in frames:
        b = a.copy()
        e = a.get_potential_energy() + sum(
            (offsets or {}).get(s, 0.0) for s in a.get_chemical_symbols()
        )
        b.calc = SinglePointCalculator(b, energy=e, forces=a.get_forces())
        shifted.append(b)
    folder.mkdir(exist_ok=True)
    ase.io.write(folder / "x.extxyz", shifted)
    tea_align.convert([f"{folder / 'x.extxyz'},level={level},name=mine"], folder / "x.h5")
    return folder / "x.h5"


def test_the_shipped_model_records_its_level():
    assert model_level(load_potential("allegro-fm-mini").source) == MINI_LEVEL
    assert load_potential("allegro-fm-mini").level_of_theory == MINI_LEVEL


def test_evaluate_refuses_another_level_naming_both_and_realigned_data_evaluates(
    frames, tmp_path, capsys
):
    """The issue's trap: data on an all-electron level evaluated with a PBE-level model. Refused with exit 2 naming both
    levels; the same frames on the model's level evaluate to ~0 error (their labels are the model's own); and
    --refit-offsets recovers the planted offsets, leaving ~0 energy error."""
    spice = _dataset(tmp_path / "spice", frames, SPICE_LEVEL, OFFSETS)
    assert dataset_level(spice) == SPICE_LEVEL
    capsys.readouterr()
    assert main(["evaluate", "allegro-fm-mini", str(spice)]) == 2
    err = capsys.readouterr().err
    assert (
        MINI_LEVEL in err and SPICE_LEVEL in err and "tea-align" in err and "--refit-offsets" in err
    )
    with pytest.raises(LevelMismatchError):
        evaluate(load_potential("allegro-fm-mini"), str(spice))

    same = _dataset(tmp_path / "pbe", frames, MINI_LEVEL)
    assert main(["evaluate", "allegro-fm-mini", str(same)]) == 0
    out = capsys.readouterr().out
    assert f"level of theory {MINI_LEVEL}" in out
    e = evaluate(load_potential("allegro-fm-mini"), str(same))
    assert (
        e.energy["all"] < 1e-3 and e.forces["all"] < 1e-2
    )  # meV/atom, meV/A: the labels are the model's own

    assert main(["evaluate", "allegro-fm-mini", str(spice), "--refit-offsets"]) == 0
    assert "refitting per-element offsets" in capsys.readouterr().out
    r = evaluate(load_potential("allegro-fm-mini"), str(spice), refit_offsets=True)
    # 4 frames, 4 elements: CaO fixes Ca + O, CH3OH fixes 4 H + C + O; the split between elements is underdetermined
    # (minimum norm), but every frame's energy is matched exactly
    assert r.energy["all"] < 1e-2
    unrefit = evaluate(load_potential("allegro-fm-mini"), str(same))
    assert r.forces["all"] == pytest.approx(
        unrefit.forces["all"], rel=1e-9
    )  # offsets never touch forces


def test_offsets_fit_recovers_planted_offsets():
    """Least squares on compositions that determine every offset recovers them exactly (an independent oracle)."""
    rng = np.random.default_rng(0)
    d = np.array([-13.6, -1027.4, -2043.9])
    counts = rng.integers(0, 9, size=(20, 3))
    fit = fit_energy_offsets(counts @ d, counts, ["H", "C", "O"])
    np.testing.assert_allclose(list(fit.values()), d, rtol=1e-10)


def test_finetune_refuses_another_level_and_refits_on_request(frames, tmp_path, capsys):
    spice = _dataset(tmp_path / "spice", frames, SPICE_LEVEL, OFFSETS)
    toml = tmp_path / "ft.toml"
    toml.write_text(
        f'[train]\ndataset = "{spice}"\nrun_dir = "ft"\ninit_from = "allegro-fm-mini"\nval_fraction = 0.25\n'
        "test_fraction = 0.0\n"
    )
    capsys.readouterr()
    assert main(["finetune", str(toml), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert MINI_LEVEL in err and SPICE_LEVEL in err
    assert not (tmp_path / "ft" / "config.yaml").exists()
    assert main(["finetune", str(toml), "--print-config", "--refit-offsets"]) == 0
    cfg = (tmp_path / "ft" / "config.yaml").read_text()
    assert (
        "energy_offsets" in cfg and f"level: {SPICE_LEVEL}" in cfg
    )  # the fine-tuned checkpoints record the data's level


def test_refitted_shifts_put_the_model_on_the_new_level(frames, tmp_path):
    """finetune_model's energy_offsets move the model's per-type shifts: the shifted model's energy is the old one plus
    the offsets of the frame's atoms (eV), its forces unchanged."""
    from allegro_fm_model import AllegroPotential
    from allegro_fm_model.calculator import periodic_edges
    from allegro_fm_model.loading import builtin_model_path
    from allegro_fm_model.training import finetune_model

    ref = load_potential("allegro-fm-mini")
    m = finetune_model(str(builtin_model_path()), energy_offsets=OFFSETS)["sole_model"]
    new = AllegroPotential(m, ref.species, ref.cutoff)
    a = frames[1]
    t = ref.types_of(a.get_chemical_symbols())
    ei, sh = periodic_edges(a.positions, np.array(a.cell), a.pbc, ref.cutoff)
    r0, r1 = (
        ref.compute(a.positions, t, ei, len(a), sh),
        new.compute(a.positions, t, ei, len(a), sh),
    )
    planted = sum(OFFSETS[s] for s in a.get_chemical_symbols())
    assert r1.energy - r0.energy == pytest.approx(
        planted, abs=5e-3
    )  # float32 model: round-off of ~3000 eV
    np.testing.assert_allclose(r1.forces, r0.forces, atol=1e-5)


def test_level_travels_through_checkpoint_package_and_torchscript_extra(tmp_path):
    """Each file kind's record is read back: a checkpoint dict key (what the LevelOfTheory callback writes), a package
    zip record, a TorchScript extra file. A file without a record is 'unknown'."""
    import shutil

    import torch
    from allegro_fm_model.callbacks import LevelOfTheory
    from allegro_fm_model.loading import builtin_model_path

    ckpt: dict = {"state_dict": {}}
    LevelOfTheory("L1").on_save_checkpoint(None, None, ckpt)
    torch.save(ckpt, tmp_path / "a.ckpt")
    assert model_level(tmp_path / "a.ckpt") == "L1"
    torch.save({"state_dict": {}}, tmp_path / "b.ckpt")
    assert model_level(tmp_path / "b.ckpt") == UNKNOWN_LEVEL

    z = tmp_path / "copy.nequip.zip"
    shutil.copy(builtin_model_path(), z)
    with pytest.raises(ValueError, match="already records"):
        write_zip_level(z, "L2")
    ts = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(ts, str(tmp_path / "m.pt"), _extra_files={LEVEL_KEY: "L3"})
    assert model_level(tmp_path / "m.pt") == "L3"


def test_calculator_takes_a_name_and_pickles(frames):
    a = frames[0].copy()
    a.calc = AllegroFMCalculator("allegro-fm-mini")
    e = a.get_potential_energy()
    calc2 = pickle.loads(pickle.dumps(a.calc))
    b = frames[0].copy()
    b.calc = calc2
    assert b.get_potential_energy() == pytest.approx(e, abs=1e-6)
    np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-6)
    from allegro_fm_model import AllegroPotential, build_model, tiny_preset

    mem = AllegroFMCalculator(
        AllegroPotential(build_model(tiny_preset(), ("H",)), ("H",), cutoff=4.0)
    )
    with pytest.raises(TypeError, match="built in memory"):
        pickle.dumps(mem)
