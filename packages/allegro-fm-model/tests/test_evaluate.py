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
    pot = AllegroPotential(build_model(tiny_preset(), species, dtype="float64"), species, cutoff=5.2)
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
