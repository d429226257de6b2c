"""A tobermorite slab with water above it (pbc = T, T, F, the water-mineral interface studies simulate), with the
shipped model: the ASE calculator and the engine agree with each other and with the same slab in a fully periodic
cell whose vacuum is wider than the cutoff, and NVE conserves energy."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from allegro_fm_bench.structures import slab_with_water, tobermorite_11a
from allegro_fm_md import ForceEvaluator, RunFile, run
from allegro_fm_model import AllegroFMCalculator, load_potential

GAP = 14.0  # A of water layer + vacuum above the slab


def _slab_with_water():
    return slab_with_water(tobermorite_11a() * (2, 2, 1), 24, gap_A=GAP)


@pytest.fixture(scope="module")
def model():
    return load_potential("allegro-fm-mini")


def test_calculator_engine_and_periodic_cell_agree_on_a_slab(model):
    slab = _slab_with_water()
    calc_slab = slab.copy()
    calc_slab.calc = AllegroFMCalculator(model)
    e_calc, f_calc = calc_slab.get_potential_energy(), calc_slab.get_forces()
    ev = ForceEvaluator(model, model.types_of(slab.get_chemical_symbols()), skin=0.5)
    _, r = ev.compute(slab.positions.copy(), np.array(slab.cell), slab.pbc)
    assert r.energy == pytest.approx(e_calc, abs=2e-3)  # float32 model: sums in another order
    np.testing.assert_allclose(r.forces, f_calc, atol=2e-4)
    periodic = slab.copy()
    periodic.pbc = (
        True  # the vacuum above the water (> 5 A) is wider than the cutoff: no image interacts
    )
    periodic.calc = AllegroFMCalculator(model)
    gap = np.linalg.norm(slab.cell[2]) - np.ptp(slab.positions[:, 2])
    assert gap > model.cutoff, f"vacuum {gap:.2f} A is not wider than the cutoff {model.cutoff} A"
    assert periodic.get_potential_energy() == pytest.approx(e_calc, abs=2e-3)
    np.testing.assert_allclose(periodic.get_forces(), f_calc, atol=2e-4)


RUN = """
[system]
structure = "slab.extxyz"
[potential]
kind = "allegro"
model = "allegro-fm-mini"
[run]
integrator = "nve"
dt_fs = 0.25
steps = 40
temperature_K = 300
[output]
dir = "out"
thermo_every = 2
"""


def test_tobermorite_slab_with_water_runs_nve_with_energy_conserved(tmp_path):
    ase.io.write(tmp_path / "slab.extxyz", _slab_with_water())
    (tmp_path / "run.toml").write_text(RUN)
    sim = run(RunFile.load(tmp_path / "run.toml"), progress=False)
    etot = np.array([t.column("etot_eV") for t in sim.thermo])
    ke = np.array([t.column("ke_eV") for t in sim.thermo])
    n = len(sim.state.masses)
    drift = np.ptp(etot) / n
    print(
        f"{n} atoms, NVE 40 x 0.25 fs: E_kin {ke.min():.2f}..{ke.max():.2f} eV, E_tot spread {drift * 1e3:.3f} meV/atom"
    )
    assert (
        np.ptp(ke) / n > 5e-3
    )  # energy flows between kinetic and potential (unrelaxed interface: a lot)
    assert drift < 0.05 * np.ptp(ke) / n  # conserved to a few % of what flows, float32 model
