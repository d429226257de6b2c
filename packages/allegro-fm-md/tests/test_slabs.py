"""Mixed periodicity (slabs: pbc = [T, T, F], ase.build.surface's default; wires): images and migration only along
periodic axes. Checked against ASE's own Lennard-Jones (which handles pbc per axis), against the same slab in a fully
periodic cell with a vacuum wider than the cutoff, against the open cluster, and N ranks against one."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from allegro_fm_md import (
    DistributedForceEvaluator,
    ForceEvaluator,
    LennardJones,
    RunFile,
    SerialComm,
    State,
    run,
)
from ase.build import fcc111
from ase.calculators.lj import LennardJones as AseLJ

EPS, SIG, RC = 0.0104, 3.4, 6.5


def _slab(pbc=(True, True, False), vacuum=8.0):
    a = fcc111(
        "Ar", size=(4, 4, 4), a=5.26, vacuum=vacuum, orthogonal=False
    )  # triclinic in-plane, vacuum along z
    a.rattle(0.05, seed=2)
    a.pbc = pbc
    return a


def _ours(atoms):
    pot = LennardJones(["Ar"], epsilon=EPS, sigma=SIG, cutoff=RC)
    _, r = ForceEvaluator(pot, pot.types_of(atoms.get_chemical_symbols()), skin=0.5).compute(
        atoms.positions.copy(), np.array(atoms.cell), atoms.pbc
    )
    return r


@pytest.mark.parametrize(
    "pbc", [(True, True, False), (True, False, False), (False, False, False), (True, True, True)]
)
def test_mixed_periodicity_equals_ase(pbc):
    a = _slab(
        pbc, vacuum=1.5
    )  # a 3 A gap: images across it would interact if the open axis were periodic
    r = _ours(a)
    a.calc = AseLJ(sigma=SIG, epsilon=EPS, rc=RC, smooth=False)
    assert r.energy == pytest.approx(a.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(r.forces, a.get_forces(), atol=1e-10)
    if not all(
        pbc
    ):  # fewer periodic axes, fewer images: a different energy than the fully periodic cell
        full = _slab((True, True, True), vacuum=1.5)
        full.calc = AseLJ(sigma=SIG, epsilon=EPS, rc=RC, smooth=False)
        assert abs(r.energy - full.get_potential_energy()) > 1e-3


def test_slab_equals_the_periodic_cell_with_vacuum_and_atoms_may_leave_along_the_open_axis():
    slab = _slab()
    wide = slab.copy()
    wide.pbc = True  # 8 A of vacuum on each side > the cutoff: the same interactions
    r1, r2 = _ours(slab), _ours(wide)
    assert r1.energy == pytest.approx(r2.energy, abs=1e-10)
    np.testing.assert_allclose(r1.forces, r2.forces, atol=1e-10)
    # an atom far above the box (evaporated) is neither wrapped back nor lost
    away = slab.copy()
    away.positions[-1, 2] += 40.0
    pot = LennardJones(["Ar"], epsilon=EPS, sigma=SIG, cutoff=RC)
    ev = ForceEvaluator(pot, pot.types_of(away.get_chemical_symbols()), skin=0.5)
    pos, r = ev.compute(away.positions.copy(), np.array(away.cell), away.pbc)
    np.testing.assert_array_equal(pos[-1], away.positions[-1])
    assert np.abs(r.forces[-1]).max() == 0.0


def test_decomposed_slab_equals_one_process():
    """The distributed evaluator (2 x 2 x 1 and 1 x 1 x 2 grids on a fake 4/2-rank comm is not possible in one process,
    so: SerialComm, whose one subdomain has no neighbours along the open axis) gives the one-process forces."""
    a = _slab()
    pot = LennardJones(["Ar"], epsilon=EPS, sigma=SIG, cutoff=RC)
    st = State(
        a.positions.copy(),
        np.zeros((len(a), 3)),
        a.get_masses(),
        np.array(a.cell),
        a.pbc.copy(),
        ids=np.arange(len(a)),
        types=pot.types_of(a.get_chemical_symbols()),
    )
    ev = DistributedForceEvaluator(pot, SerialComm(), st.cell, skin=0.5, pbc=st.pbc)
    ev.update(st)
    ref = _ours(a)
    order = np.argsort(st.ids)
    assert st.energy == pytest.approx(ref.energy, abs=1e-10)
    np.testing.assert_allclose(st.forces[order], ref.forces, atol=1e-10)


RUN = """
[system]
structure = "slab.extxyz"
[potential]
kind = "lj"
epsilon = 0.0104
sigma = 3.4
cutoff = 6.0
[run]
integrator = "nve"
dt_fs = 4.0
steps = 300
temperature_K = 60
[output]
dir = "out"
thermo_every = 10
"""


def test_slab_runs_nve_with_energy_conserved(tmp_path):
    ase.io.write(tmp_path / "slab.extxyz", _slab())
    (tmp_path / "run.toml").write_text(RUN)
    sim = run(RunFile.load(tmp_path / "run.toml"), progress=False)
    e = np.array([t.column("etot_eV") for t in sim.thermo])
    ke = np.array([t.column("ke_eV") for t in sim.thermo])
    assert ke.max() > 0.1  # it moves (64 atoms at ~60 K)
    assert np.ptp(e) < 2e-3 * ke.mean(), (np.ptp(e), ke.mean())
    assert np.isnan(
        sim.thermo[-1].column("p_GPa")
    )  # no pressure for a slab (no volume): NaN, not a made-up number
