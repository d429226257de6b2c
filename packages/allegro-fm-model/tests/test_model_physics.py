"""Presets' parameter counts and the physics of the Potential call (tiny float64 models)."""

from __future__ import annotations

import numpy as np
import pytest
from allegro_fm_model.calculator import AllegroFMCalculator, periodic_edges
from allegro_fm_model.model import build_model, count_parameters
from allegro_fm_model.potential import AllegroPotential
from allegro_fm_model.presets import PRESETS, tiny_preset
from ase import Atoms
from ase.build import bulk, molecule
from scipy.spatial.transform import Rotation

SPECIES = ("H", "C", "O", "Si", "Ca")


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_counts_match_paper(name):
    p = PRESETS[name]
    n = count_parameters(build_model(p))
    print(
        f"{name}: {n} trainable parameters (paper {p.paper_parameters}, {100 * (n / p.paper_parameters - 1):+.1f} %)"
    )
    assert abs(n / p.paper_parameters - 1) < 0.03


@pytest.fixture(scope="module")
def pot():
    import torch

    torch.manual_seed(0)
    model = build_model(tiny_preset(), SPECIES, dtype="float64", seed=3)
    # give the untrained model non-trivial weights everywhere
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(0.3 * torch.randn_like(prm))
    return AllegroPotential(model, SPECIES, cutoff=5.2)


def _calc(pot, atoms):
    a = atoms.copy()
    a.calc = AllegroFMCalculator(pot)
    return a


def _cluster():
    m = molecule("CH3CH2OH")
    m.rattle(0.1, seed=1)
    return m


def test_energy_invariant_forces_equivariant(pot):
    a = _calc(pot, _cluster())
    e0, f0 = a.get_potential_energy(), a.get_forces()
    R = Rotation.random(random_state=4).as_matrix()
    b = _calc(pot, a)
    b.positions = a.positions @ R.T + np.array([1.3, -7.0, 2.2])
    assert b.get_potential_energy() == pytest.approx(e0, abs=1e-10)
    np.testing.assert_allclose(b.get_forces(), f0 @ R.T, atol=1e-10)
    # inversion (full O(3))
    b.positions = -a.positions
    assert b.get_potential_energy() == pytest.approx(e0, abs=1e-10)
    perm = np.random.default_rng(2).permutation(len(a))
    c = _calc(pot, a[perm])
    assert c.get_potential_energy() == pytest.approx(e0, abs=1e-10)
    np.testing.assert_allclose(c.get_forces(), f0[perm], atol=1e-10)


def test_forces_are_minus_energy_gradient(pot):
    a = _calc(pot, _cluster())
    f = a.get_forces()
    h = 1e-5
    for i, k in [(0, 0), (2, 1), (5, 2), (8, 0)]:
        p = a.positions.copy()
        b = _calc(pot, a)
        p[i, k] += h
        b.positions = p
        ep = b.get_potential_energy()
        p[i, k] -= 2 * h
        b.positions = p
        em = b.get_potential_energy()
        assert f[i, k] == pytest.approx(-(ep - em) / (2 * h), abs=1e-7)


def test_stress_is_strain_derivative(pot):
    a = bulk("Si", "diamond", a=5.43) * (1, 1, 1)
    a.rattle(0.05, seed=3)
    a = _calc(pot, a)
    s = a.get_stress(voigt=False)
    h = 1e-5
    v = a.get_volume()
    for i, j in [(0, 0), (1, 2), (2, 2)]:
        eps = np.zeros((3, 3))
        eps[i, j] = eps[j, i] = h / (2 if i != j else 1)
        es = []
        for sign in (1, -1):
            b = _calc(pot, a)
            b.set_cell(a.cell @ (np.eye(3) + sign * eps), scale_atoms=True)
            es.append(b.get_potential_energy())
        d = (es[0] - es[1]) / (2 * h) / v
        assert s[i, j] == pytest.approx(d * (1 if i == j else 1), abs=1e-7)


def test_local_plus_ghost_split_equals_whole(pot):
    """Two 'ranks' each own half the atoms; ghosts are explicit image copies. Forces summed on
    owners, energies and virials summed over ranks, equal the single periodic call."""
    a = bulk("CaO", "rocksalt", a=4.81) * (2, 2, 1)
    a.rattle(0.05, seed=5)
    types = pot.types_of(a.get_chemical_symbols())
    ei, sh = periodic_edges(a.positions, np.array(a.cell), a.pbc, pot.cutoff)
    whole = pot.compute(a.positions, types, ei, len(a), sh)
    n = len(a)
    owners = np.arange(n) % 2
    f_total = np.zeros((n, 3))
    e_total, w_total = 0.0, np.zeros((3, 3))
    for rank in (0, 1):
        local = np.flatnonzero(owners == rank)
        sel = np.isin(ei[0], local)
        # ghosts: every (atom, image shift) that a local edge reaches and is not the local atom itself
        keys = {}
        ghosts_pos, ghosts_src = [], []
        lidx = {int(g): k for k, g in enumerate(local)}
        new_j = []
        for j, s in zip(ei[1, sel], sh[sel]):
            if int(j) in lidx and not s.any():
                new_j.append(lidx[int(j)])
                continue
            key = (int(j), *np.round(s, 6))
            if key not in keys:
                keys[key] = len(local) + len(ghosts_pos)
                ghosts_pos.append(a.positions[j] + s)
                ghosts_src.append(int(j))
            new_j.append(keys[key])
        pos = np.concatenate([a.positions[local], np.array(ghosts_pos)])
        tps = np.concatenate([types[local], types[ghosts_src]])
        edges = np.stack([np.array([lidx[int(i)] for i in ei[0, sel]]), np.array(new_j)])
        r = pot.compute(pos, tps, edges, len(local))
        e_total += r.energy
        w_total += r.virial
        np.add.at(f_total, local, r.forces[: len(local)])
        np.add.at(
            f_total, ghosts_src, r.forces[len(local) :]
        )  # reverse communication of ghost forces
    assert e_total == pytest.approx(whole.energy, abs=1e-10)
    np.testing.assert_allclose(f_total, whole.forces, atol=1e-10)
    np.testing.assert_allclose(w_total, whole.virial, atol=1e-9)


def test_unknown_element_and_bad_edges(pot):
    with pytest.raises(ValueError, match="atom 1: element 'Fe'"):
        pot.types_of(["H", "Fe"])
    with pytest.raises(ValueError, match="centred on a ghost"):
        pot.compute(
            np.zeros((2, 3)) + [[0, 0, 0], [1, 0, 0]], np.array([0, 0]), np.array([[1], [0]]), 1
        )


def test_isolated_atoms_no_neighbours(pot):
    a = _calc(pot, Atoms("CO", positions=[[0, 0, 0], [20, 0, 0]]))
    np.testing.assert_allclose(a.get_forces(), 0.0)
    assert np.isfinite(a.get_potential_energy())


def test_an_isolated_atom_has_exactly_its_species_shift():
    """No neighbour, no edge energy: each atom's energy is the per-type shift the model was built with (eV)."""
    shifts = {"H": -13.6, "C": -1029.4, "O": -2041.8, "Si": -7.9, "Ca": -2.3}
    p = AllegroPotential(
        build_model(tiny_preset(), SPECIES, dtype="float64", seed=5, per_type_energy_shifts=shifts),
        SPECIES,
        cutoff=5.2,
    )
    a = _calc(p, Atoms(list(SPECIES), positions=np.arange(5)[:, None] * [[20.0, 0, 0]]))
    np.testing.assert_allclose(
        a.get_potential_energies(), [shifts[s] for s in SPECIES], rtol=0, atol=1e-10
    )
    assert a.get_potential_energy() == pytest.approx(sum(shifts.values()), abs=1e-9)
