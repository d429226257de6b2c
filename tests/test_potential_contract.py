"""Every Potential implementation meets the engine's contract (allegro_fm_md.contracts.check_potential), and a new
one written outside the engine runs in it without editing the engine."""

from __future__ import annotations

import numpy as np
import pytest
from afm_testutil import LEGACY
from allegro_fm_md import (
    ForceEvaluator,
    LennardJones,
    Morse,
    PerAtomVirialPotential,
    Potential,
    PotentialContractError,
    PotentialResult,
    TimedPotential,
    VelocityVerlet,
    check_potential,
)

FLOAT32 = {"energy_tol": 1e-4, "force_tol": 1e-4, "fd_step": 1e-3, "fd_tol": 5e-3}


class Springs:
    """A toy potential written against the contract only: harmonic springs k/2 (r - r0)^2 between all pairs within
    the cutoff, half of each pair's energy on each end (as Allegro puts edge energies on the centre atom)."""

    def __init__(self, k: float = 0.5, r0: float = 2.5, cutoff: float = 4.0):
        self.species, self.cutoff, self.k, self.r0 = ("Ar",), cutoff, k, r0

    def types_of(self, symbols):
        bad = [i for i, s in enumerate(symbols) if s != "Ar"]
        if bad:
            raise ValueError(
                f"atom {bad[0]}: element {symbols[bad[0]]!r} is not known to this potential"
            )
        return np.zeros(len(symbols), np.int64)

    def compute(self, positions, types, edge_index, n_local, edge_shifts=None):
        pos, ei = np.asarray(positions, float), np.asarray(edge_index).reshape(2, -1)
        if ei.size and ei[0].max() >= n_local:
            raise ValueError("edge centred on a ghost atom")
        vec = pos[ei[1]] - pos[ei[0]] + (0 if edge_shifts is None else np.asarray(edge_shifts))
        r = np.linalg.norm(vec, axis=1)
        # smooth at the cutoff: spring energy times a switching function that goes to 0 with zero slope
        x = np.clip(r / self.cutoff, 0, 1)
        sw, dsw = (1 - x**2) ** 2, -4 * x * (1 - x**2) / self.cutoff
        e = 0.25 * self.k * (r - self.r0) ** 2 * sw
        de = 0.25 * self.k * (2 * (r - self.r0) * sw + (r - self.r0) ** 2 * dsw)
        g = (de / r)[:, None] * vec
        forces = np.zeros_like(pos)
        np.add.at(forces, ei[0], g)
        np.add.at(forces, ei[1], -g)
        atomic = np.bincount(ei[0], weights=e, minlength=n_local)[:n_local]
        return PotentialResult(float(atomic.sum()), forces, -(vec.T @ g), atomic)


def test_reference_potentials_conform():
    for pot in (
        LennardJones(["Ar"], epsilon=0.0104, sigma=3.4, cutoff=6.5),
        Morse(["Cu"], depth=0.34, a=1.36, r0=2.6, cutoff=6.0),
        TimedPotential(LennardJones(["Ar"], epsilon=0.0104, sigma=3.4, cutoff=6.5)),
        Springs(),
    ):
        rep = check_potential(pot)
        per_atom = isinstance(
            pot, PerAtomVirialPotential
        )  # 4 more checks: sum, translation, locality, shape
        assert len(set(rep.checks)) == 15 + 4 * per_atom, rep.checks
        assert rep.checks[-1].startswith("per-atom virials local" if per_atom else "F = -dE/dx")


def test_allegro_fm_potentials_conform():
    import torch
    from allegro_fm_model import AllegroPotential, build_model, load_potential, tiny_preset

    torch.manual_seed(0)
    species = ("O", "Ca", "H")
    eager = AllegroPotential(
        build_model(tiny_preset(), species, dtype="float64", seed=1), species, cutoff=5.2
    )
    assert isinstance(eager, Potential)
    rep = check_potential(eager)
    print(f"eager float64 Allegro: {rep.deviations}")
    legacy = load_potential(LEGACY)  # nequip 0.6.x deployed TorchScript, float32
    rep = check_potential(legacy, **FLOAT32)
    print(f"legacy float32 Allegro: {rep.deviations}")
    mini = load_potential("allegro-fm-mini")  # the shipped model (float32)
    check_potential(mini, **FLOAT32)


def test_the_check_catches_a_broken_potential():
    class LeakyGhosts(Springs):
        """Counts every atom's energy, ghosts included: the bug the partition check exists for."""

        def compute(self, positions, types, edge_index, n_local, edge_shifts=None):
            r = super().compute(positions, types, edge_index, n_local, edge_shifts)
            leak = 0.1 * (len(positions) - n_local)  # a per-species shift of every ghost atom
            return PotentialResult(
                r.energy + leak, r.forces, r.virial, r.atomic_energies + leak / n_local
            )

    class WrongSign(Springs):
        def compute(self, *a, **k):
            r = super().compute(*a, **k)
            return PotentialResult(r.energy, -r.forces, r.virial, r.atomic_energies)

    class VirialOfAnotherAtom(LennardJones):
        """Gives each atom the next atom's per-atom virial: they still sum to the virial, but depend on the numbering."""

        def compute(self, positions, types, edge_index, n_local, edge_shifts=None):
            r = super().compute(positions, types, edge_index, n_local, edge_shifts)
            if r.atomic_virials is None:
                return r
            w = np.roll(r.atomic_virials, 1, axis=0)
            return PotentialResult(r.energy, r.forces, r.virial, r.atomic_energies, w)

    with pytest.raises(PotentialContractError, match="per-atom virials"):
        check_potential(VirialOfAnotherAtom(["Ar"], cutoff=6.5))
    with pytest.raises(PotentialContractError, match="two-rank partition"):
        check_potential(LeakyGhosts())
    with pytest.raises(PotentialContractError, match="virial|dE/dx"):
        check_potential(WrongSign())


def test_a_new_potential_runs_in_the_engine_unchanged():
    """The toy potential drives NVE in the engine's ForceEvaluator + VelocityVerlet: energy is conserved."""
    from ase.build import bulk
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    pot = Springs()
    a = bulk("Ar", "fcc", a=3.6, cubic=True) * (3, 3, 3)
    a.rattle(0.05, seed=1)
    MaxwellBoltzmannDistribution(a, temperature_K=50, rng=np.random.default_rng(0))
    Stationary(a)
    ev = ForceEvaluator(pot, pot.types_of(a.get_chemical_symbols()), skin=0.5)
    st = ev.initial_state(a)
    e = []
    for _ in range(200):
        VelocityVerlet(2.0).step(st, ev)
        e.append(st.energy + st.kinetic_energy())
    assert np.ptp(np.array(e)) / len(a) < 1e-5


def test_a_new_potential_kind_runs_from_a_run_file_without_editing_the_engine(tmp_path):
    """``register_potential_kind`` (or an ``allegro_fm_md.potentials`` entry point) adds a run-file kind; its own keys
    come from [potential.options]. allegro-fm-model's "allegro" kind arrives the same way (entry point)."""
    import ase.io
    from allegro_fm_md import potential_kinds, register_potential_kind
    from allegro_fm_md.cli import main
    from ase.build import bulk

    assert "allegro" in potential_kinds()  # allegro-fm-model's entry point
    register_potential_kind(
        "springs", lambda spec, symbols, device: Springs(k=spec.options.get("k", 0.5))
    )
    a = bulk("Ar", "fcc", a=3.6, cubic=True) * (3, 3, 3)
    ase.io.write(tmp_path / "ar.extxyz", a)
    (tmp_path / "run.toml").write_text(
        '[system]\nstructure = "ar.extxyz"\n[potential]\nkind = "springs"\noptions = {k = 0.3}\n'
        '[run]\nintegrator = "nve"\ndt_fs = 2.0\nsteps = 50\ntemperature_K = 30\nskin = 0.5\n'
        '[output]\ndir = "out"\nthermo_every = 10\n'
    )
    assert main(["run", str(tmp_path / "run.toml"), "-q"]) == 0
    t = np.loadtxt(tmp_path / "out" / "thermo.log")
    assert t[-1, 0] == 50 and np.ptp(t[:, 13]) / len(a) < 1e-5  # conserved energy of the toy's NVE
    (tmp_path / "run.toml").write_text(
        (tmp_path / "run.toml").read_text().replace('"springs"', '"nosuch"')
    )
    assert main(["run", str(tmp_path / "run.toml"), "-q", "--overwrite"]) == 2
