"""Where forces are computed on one rank: ghosts, the Verlet list and the potential call.

``ForceEvaluator`` keeps the halo (periodic images within cutoff + skin) and the neighbour list between
rebuilds; ghosts move with their owners (image = owner + shift @ cell), and everything is rebuilt, with
positions wrapped into the cell, when an atom moved more than skin / 2. Units: eV, Angstrom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import comm as exchange
from .comm import SERIAL, Decomposition, GhostExchange, _max_op, choose_grid
from .contracts import DeviceEdgePotential
from .errors import SimulationError
from .ghosts import fold_forces, periodic_halo, wrap
from .neighbor import VerletList
from .state import State


@dataclass(frozen=True)
class ForceResult:
    """energy (eV), forces (N, 3) eV/A on the local atoms, virial (3, 3) eV (W = -dE/dstrain); per local atom: energies
    (eV), virials (eV; None unless the potential's per_atom_virial is on), committee force deviation (eV/A; None for a
    single model)."""

    energy: float
    forces: np.ndarray
    virial: np.ndarray
    atomic_energies: np.ndarray | None = None
    atomic_virials: np.ndarray | None = None
    force_deviation: np.ndarray | None = None

    def store(self, state) -> None:
        """Put this result into ``state`` (forces, energy, virial and the per-atom results)."""
        state.forces, state.energy, state.virial = self.forces, self.energy, self.virial
        state.atomic_energies, state.atomic_virials = self.atomic_energies, self.atomic_virials
        state.force_deviation = self.force_deviation


NONFINITE_POSITIONS = "positions are not finite at the force evaluation that follows this step (the integration blew up)"


class NonFinitePositions(Exception):
    """Raised inside DistributedForceEvaluator when the collective displacement check sees NaN/inf positions."""


def _evaluate(
    potential, allpos: np.ndarray, types: np.ndarray, verlet: VerletList, n_local: int, key
):
    """One Potential call: with the edges filtered on the potential's device when it keeps them there (the candidate
    list goes over only when ``key`` changes, i.e. after a rebuild), else with the edges filtered here."""
    if isinstance(potential, DeviceEdgePotential) and potential.device_edges:
        return potential.compute_from_candidates(allpos, types, verlet.candidates, n_local, key)
    return potential.compute(allpos, types, verlet.edges(allpos), n_local)


def _around(allpos: np.ndarray, types: np.ndarray, edges: np.ndarray, k: int):
    """Atom ``k`` and the atoms its edges reach: (positions, types), ``k`` first."""
    nb = edges[1, edges[0] == k]
    idx = np.concatenate([[k], nb[nb != k]])
    return allpos[idx], np.asarray(types)[idx]


class ForceEvaluator:
    """Energy, forces and virial of a periodic (or open) system on one rank with any Potential."""

    #: the communicator of collective sums: this process holds every atom (see DistributedForceEvaluator)
    comm = SERIAL

    def __init__(self, potential, types: np.ndarray, skin: float = 1.0):
        self.potential = potential
        self.types = np.asarray(types, dtype=np.int64)
        self.verlet = VerletList(potential.cutoff, skin)
        self._owner = np.zeros(0, np.int64)
        self._shift = np.zeros((0, 3))
        self._cell: np.ndarray | None = None

    def _check_box(self, cell: np.ndarray, pbc: np.ndarray) -> None:
        if pbc.any() and abs(np.linalg.det(cell)) < 1e-9:
            raise ValueError(
                "a periodic system needs three linearly independent cell vectors (give open axes a box vector too)"
            )

    def rebuild(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
        """Wrap positions, rebuild halo and neighbour list; returns the wrapped positions."""
        self._check_box(cell, pbc)
        n = len(positions)
        if pbc.any():  # slabs and wires: images along the periodic axes only
            positions = wrap(positions, cell, pbc)
            halo = periodic_halo(positions, cell, self.verlet.cutoff + self.verlet.skin, pbc)
            self._owner, self._shift = halo.owner, halo.shift @ cell
        else:
            self._owner, self._shift = np.zeros(0, np.int64), np.zeros((0, 3))
        self.verlet.build(self._all_positions(positions), n)
        self._cell = np.array(cell, dtype=np.float64)
        return positions

    def _all_positions(self, positions: np.ndarray) -> np.ndarray:
        return (
            np.concatenate([positions, positions[self._owner] + self._shift])
            if len(self._owner)
            else positions
        )

    def update(self, state) -> None:
        """Forces, energy and virial of ``state`` (an integrators.State) in place; positions may be re-wrapped.
        Non-finite positions raise SimulationError naming the atoms."""
        bad = ~np.isfinite(state.positions).all(axis=1)
        if bad.any():
            ids = np.flatnonzero(bad) if state.ids is None else state.ids[bad]
            raise SimulationError(NONFINITE_POSITIONS, state.step, tuple(int(i) for i in ids[:10]))
        state.positions, r = self.compute(state.positions, state.cell, state.pbc)
        r.store(state)

    def invalidate(self) -> None:
        """Force a list rebuild at the next update (restart files are written right after one)."""
        self.verlet.builds = 0

    def neighbourhood(self, state, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Local atom ``k`` (first) and its neighbours within the cutoff (periodic images unwrapped): positions (A) and
        types."""
        allpos = self._all_positions(state.positions)
        types = np.concatenate([self.types, self.types[self._owner]])
        return _around(allpos, types, self.verlet.edges(allpos), k)

    def closest_pair(self, state) -> tuple[float, int, int]:
        """Shortest distance (A) between two atoms within the lists, with the ids of the pair."""
        allpos = self._all_positions(state.positions)
        ei = self.verlet.edges(allpos)
        if not ei.shape[1]:
            return np.inf, -1, -1
        d = np.linalg.norm(allpos[ei[1]] - allpos[ei[0]], axis=1)
        k = int(np.argmin(d))
        owner = np.concatenate([np.arange(len(state.positions)), self._owner])
        ids = state.ids if state.ids is not None else np.arange(len(state.positions))
        return float(d[k]), int(ids[ei[0, k]]), int(ids[owner[ei[1, k]]])

    def initial_state(self, atoms) -> State:
        """The State of ``atoms`` (ase.Atoms, one rank: positions A wrapped into the cell, velocities, masses amu, cell,
        pbc) with its first energy (eV), forces (eV/A) and virial (eV) from this evaluator."""
        pos, r = self.compute(atoms.positions.copy(), np.array(atoms.cell), atoms.pbc)
        state = State(
            pos,
            atoms.get_velocities().copy(),
            atoms.get_masses(),
            np.array(atoms.cell),
            atoms.pbc.copy(),
        )
        r.store(state)
        return state

    def compute(
        self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray
    ) -> tuple[np.ndarray, ForceResult]:
        """(possibly re-wrapped positions, result). Rebuilds the lists when the skin criterion says so."""
        n = len(positions)
        stale = (
            not self.verlet.builds or self._cell is None or not np.array_equal(self._cell, cell)
        )  # new cell: new images
        allpos = None if stale else self._all_positions(positions)
        if allpos is None or self.verlet.needs_rebuild(allpos):
            positions = self.rebuild(positions, cell, pbc)
            allpos = self._all_positions(positions)
        types = np.concatenate([self.types, self.types[self._owner]])
        r = _evaluate(self.potential, allpos, types, self.verlet, n, (id(self), self.verlet.builds))
        fdev = None
        if getattr(r, "member_forces", None) is not None:  # each member's total force on each atom
            folded = [fold_forces(np.asarray(f), n, self._owner) for f in r.member_forces]
            fdev = self.potential.force_deviation(np.stack(folded))
        return positions, ForceResult(
            float(r.energy),
            fold_forces(np.asarray(r.forces), n, self._owner),
            np.asarray(r.virial),
            np.asarray(r.atomic_energies, dtype=np.float64),
            getattr(r, "atomic_virials", None),
            fdev,
        )


class DistributedForceEvaluator:
    """Forces over MPI ranks: migration, ghost exchange, Verlet lists and reverse force communication.

    Each rank holds the atoms of its subdomain in ``state`` (with ``state.ids`` and ``state.types``,
    which travel with the atoms). Lists are rebuilt, collectively, when any atom on any rank moved more
    than skin / 2; then atoms migrate and the atom count is checked (lost atoms are an error naming the
    missing ids). The potential sees local + ghost atoms and edges centred on local atoms only.
    """

    def __init__(
        self,
        potential,
        comm,
        cell: np.ndarray,
        skin: float = 1.0,
        grid: tuple[int, int, int] | None = None,
        pbc=None,
    ):
        self.potential, self.comm, self.skin = potential, comm, float(skin)
        cell = np.asarray(cell, dtype=np.float64)
        pbc = np.ones(3, bool) if pbc is None else np.asarray(pbc, dtype=bool)
        self.dec = Decomposition(
            comm, cell, grid or choose_grid(comm.size, cell), potential.cutoff + self.skin, pbc
        )
        self.exchange = GhostExchange(self.dec)
        self.verlet = VerletList(potential.cutoff, self.skin)
        self._ref: np.ndarray | None = None
        self._types_all: np.ndarray | None = None
        self.n_total: int | None = None
        self.builds = 0

    def _needs_rebuild(self, positions: np.ndarray) -> bool:
        if self._ref is None or self._ref.shape != positions.shape:
            local = np.inf
        else:
            local = float(np.sqrt(((positions - self._ref) ** 2).sum(axis=1).max(initial=0.0)))
            if not np.isfinite(
                local
            ):  # NaN/inf positions: flagged through the same reduction, no extra collective
                local = np.inf
        worst = self.comm.allreduce(local, op=_max_op(self.comm))
        if (
            worst == np.inf and self._ref is not None
        ):  # _ref is reset on every rank together: this is non-finite input
            raise NonFinitePositions
        return worst > 0.5 * self.skin

    def _rebuild(self, state) -> np.ndarray:
        if state.ids is None or state.types is None:
            raise ValueError("a distributed run needs state.ids and state.types")
        arrays = {
            "positions": wrap(state.positions, self.dec.cell, self.dec.pbc),
            "velocities": state.velocities,
            "masses": state.masses,
            "ids": state.ids,
            "types": state.types,
        }
        new = exchange.migrate(
            self.dec, arrays
        )  # through the module: a test injects a lossy exchange
        order = np.argsort(
            new["ids"], kind="stable"
        )  # canonical local order: a resumed run builds identical lists
        new = {k: v[order] for k, v in new.items()}
        n = int(self.comm.allreduce(len(new["ids"])))
        if self.n_total is None:
            self.n_total = n
        if n != self.n_total:
            ids = np.sort(np.concatenate(self.comm.allgather(new["ids"])))
            missing = np.setdiff1d(np.arange(self.n_total), ids)
            raise RuntimeError(
                f"step {state.step}: lost atoms: {self.n_total - n} of {self.n_total} "
                f"(ids {', '.join(map(str, missing[:10]))})"
            )
        state.positions, state.velocities, state.masses = (
            new["positions"],
            new["velocities"],
            new["masses"],
        )
        state.ids, state.types = new["ids"], new["types"]
        allpos, tags = self.exchange.build(
            state.positions, np.stack([state.types, state.ids], axis=1)
        )
        self._types_all, self._ids_all = tags[:, 0], tags[:, 1]
        self.verlet.build(allpos, len(state.positions))
        self._ref = state.positions.copy()
        self.builds += 1
        return allpos

    def update(self, state) -> None:
        """Forces on this rank's atoms, global energy (eV) and virial (eV), in place."""
        if not np.array_equal(
            state.cell, self.dec.cell
        ):  # deformation / barostat: same grid over the new cell
            self.dec = Decomposition(
                self.comm,
                np.array(state.cell, dtype=np.float64),
                self.dec.grid,
                self.dec.halo,
                self.dec.pbc,
            )
            self.exchange = GhostExchange(self.dec)
            self._ref = None
        try:
            rebuild = self._needs_rebuild(state.positions)
        except NonFinitePositions:
            bad = state.ids[~np.isfinite(state.positions).all(axis=1)]
            bad = np.sort(np.concatenate(self.comm.allgather(bad)))
            raise SimulationError(
                NONFINITE_POSITIONS, state.step, tuple(int(i) for i in bad[:10])
            ) from None
        if rebuild:
            allpos = self._rebuild(state)
        else:
            allpos = self.exchange.forward(state.positions)
        n = len(state.positions)
        self._allpos = allpos
        r = _evaluate(
            self.potential, allpos, self._types_all, self.verlet, n, (id(self), self.builds)
        )
        members = getattr(r, "member_forces", None)
        fdev = None
        if members is None:
            forces = self.exchange.reverse(np.asarray(r.forces))
        else:  # the members' forces travel with the forces: one reverse exchange, wider rows
            k = len(members)
            wide = np.concatenate([np.asarray(r.forces), *np.asarray(members)], axis=1)
            back = self.exchange.reverse(wide)
            forces = back[:, :3]
            fdev = self.potential.force_deviation(back[:, 3:].reshape(n, k, 3).transpose(1, 0, 2))
        ForceResult(
            float(self.comm.allreduce(float(r.energy))),
            forces,
            np.asarray(self.comm.allreduce(np.asarray(r.virial))),
            np.asarray(r.atomic_energies, dtype=np.float64),
            getattr(r, "atomic_virials", None),
            fdev,
        ).store(state)

    def invalidate(self) -> None:
        """Force a (collective) rebuild at the next update."""
        self._ref = None

    def neighbourhood(self, state, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Local atom ``k`` (first) and its neighbours within the cutoff (ghosts included, unwrapped): positions (A) and
        types. No communication."""
        return _around(self._allpos, self._types_all, self.verlet.edges(self._allpos), k)

    def closest_pair(self, state) -> tuple[float, int, int]:
        """Shortest distance (A) between two atoms over all ranks, with the global ids of the pair."""
        ei = self.verlet.edges(self._allpos)
        best = (np.inf, -1, -1)
        if ei.shape[1]:
            d = np.linalg.norm(self._allpos[ei[1]] - self._allpos[ei[0]], axis=1)
            k = int(np.argmin(d))
            best = (float(d[k]), int(self._ids_all[ei[0, k]]), int(self._ids_all[ei[1, k]]))
        return min(self.comm.allgather(best))
