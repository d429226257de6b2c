"""Boundary 2: an Allegro-FM potential runs in the MD engine unchanged (no engine code knows nequip)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary


@pytest.fixture(scope="module")
def allegro():
    import torch
    from allegro_fm_model import AllegroPotential, build_model, tiny_preset

    torch.manual_seed(0)
    species = ("O", "Ca")
    model = build_model(tiny_preset(), species, dtype="float64", seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.2)  # a gentle random potential around the rocksalt structure
    return AllegroPotential(model, species, cutoff=5.2)


def _cao():
    a = bulk("CaO", "rocksalt", a=4.81) * (2, 2, 2)
    a.set_cell(a.cell @ np.array([[1, 0.05, 0], [0, 1, 0.03], [0, 0, 1]]), scale_atoms=True)
    a.rattle(0.03, seed=2)
    return a


def _nve_start(pot, temperature_K: float, skin: float):
    """(state, evaluator) of the rattled CaO cell at ``temperature_K`` with forces computed."""
    from allegro_fm_md import ForceEvaluator, State

    a = _cao()
    MaxwellBoltzmannDistribution(a, temperature_K=temperature_K, rng=np.random.default_rng(3))
    Stationary(a)
    ev = ForceEvaluator(pot, pot.types_of(a.get_chemical_symbols()), skin=skin)
    pos, r = ev.compute(a.positions.copy(), np.array(a.cell), a.pbc)
    return State(
        pos,
        a.get_velocities().copy(),
        a.get_masses(),
        np.array(a.cell),
        a.pbc.copy(),
        forces=r.forces,
        energy=r.energy,
    ), ev


def test_engine_forces_equal_ase_calculator(allegro):
    from allegro_fm_md import ForceEvaluator
    from allegro_fm_model import AllegroFMCalculator

    a = _cao()
    ev = ForceEvaluator(allegro, allegro.types_of(a.get_chemical_symbols()), skin=0.5)
    pos, r = ev.compute(a.positions.copy(), np.array(a.cell), a.pbc)
    b = a.copy()
    b.calc = AllegroFMCalculator(allegro)
    assert r.energy == pytest.approx(b.get_potential_energy(), abs=1e-9)
    d = pos - a.positions
    assert np.abs(d - np.round(d @ np.linalg.inv(a.cell)) @ a.cell).max() < 1e-12
    np.testing.assert_allclose(r.forces, b.get_forces(), atol=1e-9)
    np.testing.assert_allclose(-r.virial / a.get_volume(), b.get_stress(voigt=False), atol=1e-9)


def test_device_edge_path_equals_host_edges_and_uploads_only_at_rebuilds(allegro, monkeypatch):
    """AllegroPotential(device_edges=True) on the CPU device (the code path cuda/xpu take): the engine hands it the Verlet
    candidates only when the list was rebuilt and the potential filters them to the cutoff in torch; 60 NVE steps equal
    the host-filtered run to 1e-12, and the candidate upload happened once per list build, not once per step."""
    from allegro_fm_md import VelocityVerlet
    from allegro_fm_model import AllegroPotential

    dev = AllegroPotential(allegro.model, allegro.species, allegro.cutoff, device_edges=True)
    assert (
        not allegro.device_edges and dev.device_edges
    )  # the default on the CPU is the host filter
    uploads = []
    real = AllegroPotential.compute_from_candidates

    def counting(self, positions, types, candidates, n_local, key):
        if self._candidates is None or self._candidates[0] != key:
            uploads.append(key)
        return real(self, positions, types, candidates, n_local, key)

    monkeypatch.setattr(AllegroPotential, "compute_from_candidates", counting)
    runs = []
    for pot in (allegro, dev):
        st, ev = _nve_start(pot, 600, 0.3)
        integ = VelocityVerlet(1.0)
        for _ in range(60):
            integ.step(st, ev)
        runs.append((st.positions.copy(), st.forces.copy(), st.energy, ev.verlet.builds))
    (p0, f0, e0, b0), (p1, f1, e1, b1) = runs
    assert np.abs(p1 - p0).max() < 1e-12 and np.abs(f1 - f0).max() < 1e-12 and abs(e1 - e0) < 1e-10
    assert (
        b1 == b0 and 1 < b1 < 30 and len(uploads) == b1
    )  # rebuilds happened; one upload per build


def test_allegro_nve_conserves_energy(allegro):
    from allegro_fm_md import VelocityVerlet

    st, ev = _nve_start(allegro, 300, 0.5)
    integ = VelocityVerlet(0.5)
    e = []
    for _ in range(200):
        integ.step(st, ev)
        e.append(st.energy + st.kinetic_energy())
    e = np.array(e) / len(st.masses)
    print(f"tiny Allegro NVE, 64 atoms, 100 fs: total-energy spread {np.ptp(e):.2e} eV/atom")
    assert np.ptp(e) < 1e-4


def test_compiled_model_file_runs_in_the_engine(allegro, tmp_path):
    """The AOTInductor file (``.nequip.pt2``) behind the same engine call: equal forces and virial, and the same
    NVE trajectory as the eager model (the engine passes strided arrays and explicit ghosts)."""
    from allegro_fm_md import ForceEvaluator, VelocityVerlet
    from allegro_fm_model import load_potential
    from allegro_fm_model.compiled import compile_graph_model

    path = compile_graph_model(allegro.model, tmp_path / "tiny.nequip.pt2")
    comp = load_potential(path)
    a = _cao()
    MaxwellBoltzmannDistribution(a, temperature_K=300, rng=np.random.default_rng(3))
    Stationary(a)
    finals = []
    for pot in (allegro, comp):
        ev = ForceEvaluator(pot, pot.types_of(a.get_chemical_symbols()), skin=0.5)
        st = ev.initial_state(a)
        virial0 = st.virial.copy()  # the first call's virial (eV)
        for _ in range(40):
            VelocityVerlet(0.5).step(st, ev)
        finals.append((st.positions.copy(), st.energy, virial0))
    np.testing.assert_allclose(finals[1][2], finals[0][2], atol=1e-9)
    np.testing.assert_allclose(finals[1][0], finals[0][0], atol=1e-9)
    assert finals[1][1] == pytest.approx(finals[0][1], abs=1e-8)
