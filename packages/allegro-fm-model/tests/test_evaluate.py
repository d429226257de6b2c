"""evaluate() reports RMSEs in meV/atom, meV/A and MPa: checked on labels with known offsets."""

from __future__ import annotations

import numpy as np
import pytest
import tea_align
from allegro_fm_model import AllegroFMCalculator, AllegroPotential, build_model, tiny_preset
from allegro_fm_model.evaluate import evaluate
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator


def test_rmse_units_on_known_offsets(tmp_path):
    import ase.io

    species = ("H", "C", "O", "Ca")
    pot = AllegroPotential(
        build_model(tiny_preset(), species, dtype="float64"), species, cutoff=5.2
    )
    frames = []
    for k in range(3):
        a = bulk("CaO", "rocksalt", a=4.81) * (2, 1, 1)
        a.rattle(0.05, seed=k)
        m = molecule("CH3OH")
        m.rattle(0.05, seed=k)
        for s in (a, m):
            s.calc = AllegroFMCalculator(pot)
            e, f = s.get_potential_energy(), s.get_forces()
            kw = {"energy": e + 0.002 * len(s), "forces": f + 0.003}
            if s.pbc.all():
                kw["stress"] = s.get_stress() + np.array([1e-5] * 3 + [0] * 3)
            s2 = s.copy()
            s2.calc = SinglePointCalculator(s2, **kw)
            frames.append(s2)
    ase.io.write(tmp_path / "x.extxyz", frames)
    tea_align.convert([f"{tmp_path / 'x.extxyz'},level=L,name=mix"], tmp_path / "x.h5")
    err = evaluate(pot, str(tmp_path / "x.h5"))
    assert err.frames == 6
    assert err.energy["all"] == pytest.approx(2.0, rel=1e-4)
    assert err.forces["all"] == pytest.approx(3.0, rel=1e-3)
    # only diagonal stress offsets: RMSE over 9 components = sqrt(3/9) * 1e-5 eV/A^3 in MPa
    assert err.stress["all"] == pytest.approx(np.sqrt(3 / 9) * 1e-5 * 160217.66208, rel=1e-3)
    assert set(err.forces_per_element) == {"H", "C", "O", "Ca"}
    assert "| mix |" in err.markdown()


def test_errors_by_frame_key_and_force_cosine(tmp_path):
    """Grouped by the frames' key (extxyz config_type: a structure family): labels equal to the model's forces give cosine
    1 and RMSE 0, labels with every force reversed give cosine -1 and RMSE 2 |F|; ``all`` pools both."""
    import ase.io

    species = ("C", "O", "Ca")
    pot = AllegroPotential(
        build_model(tiny_preset(), species, dtype="float64"), species, cutoff=5.2
    )
    frames, fsq = [], 0.0
    for k, family in enumerate(("same", "reversed", "same")):
        a = bulk("CaO", "rocksalt", a=4.81) * (2, 1, 1)
        a.rattle(0.1, seed=k)
        a.calc = AllegroFMCalculator(pot)
        e, f = a.get_potential_energy(), a.get_forces()
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=e, forces=f if family == "same" else -f)
        b.info["config_type"] = family
        frames.append(b)
        if family == "reversed":
            fsq = float((f**2).mean())
    ase.io.write(tmp_path / "x.extxyz", frames)
    tea_align.convert([f"{tmp_path / 'x.extxyz'},level=L,name=mix"], tmp_path / "x.h5")
    err = evaluate(pot, str(tmp_path / "x.h5"), by="key")
    assert set(err.forces) == {"all", "same", "reversed"}
    assert err.force_cosine["same"] == pytest.approx(1.0, abs=1e-9) and err.forces[
        "same"
    ] == pytest.approx(0.0, abs=1e-3)  # extxyz digits
    assert err.force_cosine["reversed"] == pytest.approx(-1.0, abs=1e-9)
    assert err.forces["reversed"] == pytest.approx(2000.0 * np.sqrt(fsq), rel=1e-6)
    assert -1.0 < err.force_cosine["all"] < 1.0
    assert "| key |" in err.markdown() and "| reversed |" in err.markdown()
    with pytest.raises(ValueError, match="by must be"):
        evaluate(pot, str(tmp_path / "x.h5"), by="family")
