"""Per-atom energies and virials of the model's potentials, and committees (issue 32).

Float64 models: sums and equalities to 1e-10 (eV, eV/A); the finite-difference stress to the step's truncation
error."""

from __future__ import annotations

import numpy as np
import pytest
from allegro_fm_model import (
    AllegroFMCalculator,
    AllegroPotential,
    CommitteePotential,
    build_model,
    periodic_edges,
    tiny_preset,
)
from allegro_fm_model.compiled import edge_copy_graph, fold_copies, per_atom_virials
from ase.build import bulk

SPECIES = ("H", "C", "O", "Si", "Ca")


def _model(seed: int, cutoff: float = 5.2):
    import torch

    torch.manual_seed(seed)
    model = build_model(tiny_preset(), SPECIES, dtype="float64", seed=seed)
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(0.3 * torch.randn_like(prm))
    return AllegroPotential(model, SPECIES, cutoff=cutoff)


@pytest.fixture(scope="module")
def two():
    return _model(5), _model(7)


def _cell():
    a = bulk("CaO", "rocksalt", a=4.8, cubic=True) * (2, 1, 1)
    a.symbols[[1, 5]] = "Si"
    a.rattle(0.1, seed=2)
    return a


def test_per_atom_virials_sum_translate_and_match_the_strain_derivative(two):
    pot = two[0]
    a = _cell()
    a.calc = AllegroFMCalculator(pot)
    e_i, s_i = a.get_potential_energies(), a.get_stresses(voigt=False)
    assert e_i.sum() == pytest.approx(a.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(s_i.sum(0), a.get_stress(voigt=False), atol=1e-10)
    assert np.abs(s_i).max() > 1e-3 and not pot.per_atom_virial  # switched off after the call
    b = a.copy()
    b.positions += [1.3, -0.7, 2.2]
    b.calc = AllegroFMCalculator(pot)
    np.testing.assert_allclose(b.get_stresses(voigt=False), s_i, atol=1e-10)
    # the summed per-atom stress is dE/dstrain / V: central differences of the energy under a symmetric strain
    h = 1e-5
    cell0, v = np.array(a.cell), a.get_volume()
    fd = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            es = []
            for sgn in (1, -1):
                eps = np.zeros((3, 3))
                eps[i, j] += 0.5 * sgn * h
                eps[j, i] += 0.5 * sgn * h
                c = a.copy()
                c.set_cell(cell0 @ (np.eye(3) + eps), scale_atoms=True)
                c.calc = AllegroFMCalculator(pot)
                es.append(c.get_potential_energy())
            fd[i, j] = (es[0] - es[1]) / (2 * h) / v
    np.testing.assert_allclose(s_i.sum(0), fd, atol=1e-7)


def test_edge_copy_graph_gives_the_direct_per_edge_virials(two):
    """The compiled and nequip 0.6 files' route (one ghost per edge, the copies' forces are -dE/dr) run through the eager
    model equals the eager model's own per-edge gradients; forces folded back equal the ordinary call's."""
    pot = two[0]
    a = _cell()
    ei, sh = periodic_edges(a.positions, np.array(a.cell), a.pbc, pot.cutoff)
    types = pot.types_of(a.get_chemical_symbols())
    pot.per_atom_virial = True
    try:
        direct = pot.compute(a.positions, types, ei, len(a), sh)
    finally:
        pot.per_atom_virial = False
    pos, typ, eic, copy_of, vec = edge_copy_graph(a.positions, types, ei, len(a), sh)
    r = pot.compute(pos, typ, eic, len(a))
    n = len(a)
    np.testing.assert_allclose(
        per_atom_virials(vec, eic[0], r.forces[n:], n), direct.atomic_virials, atol=1e-10
    )
    np.testing.assert_allclose(fold_copies(r.forces, copy_of, n), direct.forces, atol=1e-10)
    assert r.energy == pytest.approx(direct.energy, abs=1e-10)


def test_committee_is_the_weighted_mean_and_its_spread(two):
    p1, p2 = two
    p2b = _model(7, cutoff=4.0)  # a member with a smaller cutoff sees only its own edges
    com = CommitteePotential([p1, p2b], weights=[1.0, 3.0])
    assert com.cutoff == pytest.approx(5.2) and com.species == SPECIES
    a = _cell()
    ei, sh = periodic_edges(a.positions, np.array(a.cell), a.pbc, com.cutoff)
    types = com.types_of(a.get_chemical_symbols())
    r = com.compute(a.positions, types, ei, len(a), sh)
    alone = []
    for p in (p1, p2b):  # each member alone, with its own neighbour list
        e, s = periodic_edges(a.positions, np.array(a.cell), a.pbc, p.cutoff)
        alone.append(p.compute(a.positions, types, e, len(a), s))
    w = np.array([0.25, 0.75])
    assert r.energy == pytest.approx(w @ [x.energy for x in alone], abs=1e-10)
    mean_f = w[0] * alone[0].forces + w[1] * alone[1].forces
    np.testing.assert_allclose(r.forces, mean_f, atol=1e-10)
    np.testing.assert_allclose(
        r.virial, w[0] * alone[0].virial + w[1] * alone[1].virial, atol=1e-10
    )
    by_hand = np.sqrt(
        sum(wk * ((x.forces - mean_f) ** 2).sum(axis=1) for wk, x in zip(w, alone, strict=True))
    )
    fdev = com.force_deviation(r.member_forces)
    np.testing.assert_allclose(fdev, by_hand, atol=1e-10)
    assert fdev.min() > 1e-3  # two different models disagree everywhere
    a.calc = AllegroFMCalculator(com)
    np.testing.assert_allclose(a.calc.get_property("force_deviation", a), by_hand, atol=1e-10)
    s = a.get_stresses(voigt=False)
    np.testing.assert_allclose(s.sum(0), a.get_stress(voigt=False), atol=1e-10)


def test_committee_refusals(two):
    p1, p2 = two
    with pytest.raises(ValueError, match="at least two"):
        CommitteePotential([p1])
    with pytest.raises(ValueError, match="non-negative"):
        CommitteePotential([p1, p2], weights=[1.0, -1.0])
    p2.level_of_theory = "PBE"
    p1.level_of_theory = "wB97M-D3(BJ)"
    try:
        with pytest.raises(ValueError, match="different levels of theory.*PBE"):
            CommitteePotential([p1, p2])
    finally:
        p1.level_of_theory = p2.level_of_theory = "unknown"
    com = CommitteePotential([p1, p2])
    with pytest.raises(ValueError, match="Xe"):
        com.types_of(["Ca", "Xe"])
