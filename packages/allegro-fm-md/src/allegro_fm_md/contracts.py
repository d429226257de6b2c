"""The engine's contracts: ``Potential`` (forces), its ``PotentialResult`` and ``check_potential``; ``Integrator``
(time stepping); ``Reporter`` and ``Guard`` (what a Simulation does after each step: reporters.py); ``Comm`` (the
communicator calls the engine makes: mpi4py's ``MPI.COMM_WORLD`` and comm.SerialComm both conform).

A Potential is anything with these four members (a structural Protocol: implementations never import this
module; allegro-fm-model's eager, compiled and legacy potentials and this package's reference potentials
all conform):

    species: tuple[str, ...]                 element symbols; types index into it
    cutoff: float                            Angstrom; no interaction beyond it
    types_of(symbols) -> np.ndarray          type indices; ValueError naming the first unknown element and atom
    compute(positions, types, edge_index, n_local, edge_shifts=None) -> PotentialResult-like

``compute`` gets local atoms [0, n_local) and ghost atoms [n_local, N) (periodic images or other ranks'
atoms, positions unwrapped) and only edges i -> j whose centre i is local (a ValueError otherwise). It returns
the energy of the local atoms only (eV: the sum over ranks is the system's energy), forces on every atom given
(eV/A: the engine sends ghost forces to their owners), the virial W = -sum_edges r_ij (x) dE/dr_ij (eV; ASE
stress = -W / V) and per-atom energies of the local atoms (eV). ``edge_shifts`` (E, 3) A, when given, are added
to x_j - x_i (periodic images without ghost copies: one-process callers such as the ASE calculator).

Two optional capabilities, each with its own Protocol:

- ``PerAtomVirialPotential``: with ``per_atom_virial = True`` the result also holds ``atomic_virials`` (n_local, 3, 3)
  eV, W_i = -sum_{edges i -> j} r_ij (x) dE/dr_ij: the strain derivative of atom i's own energy. They sum to the
  virial, depend on relative vectors only (translation-invariant) and on the edges centred on i only, so every rank
  computes its own atoms' with no communication. For a pair potential this is ASE's and LAMMPS's half-and-half split
  of each pair; ASE's per-atom stress is -W_i / V (summing to the stress).
- ``CommitteeLikePotential`` (allegro-fm-model's ``CommitteePotential``): results also hold ``member_forces``
  (K, N, 3) eV/A, each member's forces on every atom given, and ``member_weights`` (K,): the engine folds them with
  the forces (in the same reverse exchange) and asks the potential's ``force_deviation`` for each atom's deviation
  where the atom lives.

``check_potential`` checks an implementation against this contract on a small cluster (torch-sim's model
validator plays the same role): result types and shapes, energy = sum of per-atom energies, ghost-centred
edges refused, translation invariance, a two-rank partition adding up to the whole, virial = sum x (x) F,
F = -dE/dx by central differences, and periodic shifts equal to explicit ghost copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class PotentialResult:
    """Output of ``Potential.compute``: energy (eV) of local atoms, forces (N, 3) eV/A on all atoms given, virial
    (3, 3) eV (W = -sum r_ij (x) dE/dr_ij), per-atom energies (n_local,) eV."""

    energy: float
    forces: np.ndarray
    virial: np.ndarray
    atomic_energies: np.ndarray
    #: (n_local, 3, 3) eV, per-atom virials when ``per_atom_virial`` is on (see the module docstring), else None
    atomic_virials: np.ndarray | None = None
    #: (K, N, 3) eV/A, each committee member's forces on every atom given; None for a single model
    member_forces: np.ndarray | None = None
    #: (K,) the members' weights (sum 1); None for a single model
    member_weights: np.ndarray | None = None


@runtime_checkable
class Potential(Protocol):
    """What the engine calls for forces (see the module docstring for the units and the local/ghost contract)."""

    species: tuple[str, ...]
    cutoff: float

    def types_of(self, symbols: Sequence[str]) -> np.ndarray:
        """Type indices of element symbols; ValueError naming the first unknown element and atom."""
        ...

    def compute(
        self,
        positions: np.ndarray,
        types: np.ndarray,
        edge_index: np.ndarray,
        n_local: int,
        edge_shifts: np.ndarray | None = None,
    ) -> PotentialResult:
        """Energy of the local atoms, forces on all atoms given, virial and per-atom energies.

        Args:
            positions: (N, 3) A, local atoms [0, n_local) then ghosts (periodic images or other ranks' atoms, unwrapped).
            types: (N,) int, indices into ``species``.
            edge_index: (2, E) int, edges i -> j within ``cutoff`` with every centre i < n_local (both directions of a
                local-local pair; a local-ghost pair once, from the local end).
            n_local: number of local atoms.
            edge_shifts: (E, 3) A added to x_j - x_i (periodic images without ghost copies), or None (zeros).

        Returns:
            ``PotentialResult``: energy (eV) of the local atoms only, forces (N, 3) eV/A on every atom given (the engine
            sends ghost forces back to their owners), virial (3, 3) eV = -sum_edges r_ij (x) dE/dr_ij, atomic_energies
            (n_local,) eV.
        """
        ...


@runtime_checkable
class DeviceEdgePotential(Potential, Protocol):
    """A Potential that keeps the neighbour edges on its own device (cuda, xpu): the engine hands it the Verlet list's
    candidate pairs (within cutoff + skin) only when the list was rebuilt, and every step only the positions; the
    potential keeps the pairs within ``cutoff`` on the device and returns forces. Used when ``device_edges`` is True
    (allegro-fm-model's AllegroPotential: by default on any device but the CPU)."""

    device_edges: bool

    def compute_from_candidates(
        self,
        positions: np.ndarray,
        types: np.ndarray,
        candidates: np.ndarray,
        n_local: int,
        key: object,
    ) -> PotentialResult:
        """As ``compute``, with ``candidates`` (2, E) uploaded only when ``key`` changes; the same result as ``compute`` on
        the candidates within ``cutoff``."""
        ...


@runtime_checkable
class PerAtomVirialPotential(Potential, Protocol):
    """A Potential that can also return per-atom virials: with ``per_atom_virial`` set True, ``compute`` (and
    ``compute_from_candidates`` where present) fill ``atomic_virials`` (n_local, 3, 3) eV (module docstring). Off by
    default: it costs an (E, 3, 3) product per call (and for the compiled and nequip 0.6 files a graph with one ghost
    per edge). The engine turns it on when ``[output] per_atom`` asks for "stress"."""

    per_atom_virial: bool


@runtime_checkable
class CommitteeLikePotential(Potential, Protocol):
    """A Potential whose results carry ``member_forces`` (a committee of models). One whose mean does not need its
    members (allegro-fm-model's shallow-ensemble ``HeadsPotential``: the mean is the model itself) may also have
    ``members_wanted``: while False it returns no ``member_forces`` (the Simulation sets it from ``fdev_every``)."""

    def force_deviation(self, member_forces: np.ndarray) -> np.ndarray:
        """Per-atom force deviation (n,) eV/A from each member's total forces (K, n, 3) eV/A on n atoms."""
        ...


@runtime_checkable
class Integrator(Protocol):
    """What ``Simulation`` drives (integrators.IntegratorBase gives the defaults; the engine never probes for members).
    Run-file kinds register as ``integrators.IntegratorKind`` (integrators/registry.py).

    ``dt_fs``: time step (fs; 0 for minimisers). ``rng``: a per-rank stateful noise generator (its state goes into
    restart files, per rank, and ties a resume to the same rank count), None when there is none: the built-in Langevin
    and barostat use counter-based noise (noise.py) and have none. ``conserves_energy``: whether ``conserved_energy`` is
    conserved (NVE, Nose-Hoover chain) or only reported (baths, deformation, minimisers)."""

    dt_fs: float
    rng: object
    conserves_energy: bool

    def step(self, state, evaluator):
        """Advance one step.

        Args:
            state: this rank's ``State`` (positions A, velocities A/ASE-time, forces eV/A, energy eV, virial eV, cell A,
                step, time_fs); updated in place.
            evaluator: a ``ForceEvaluator`` / ``DistributedForceEvaluator``; ``evaluator.update(state)`` computes forces
                (it may migrate atoms between ranks: read the state's arrays after it) and ``evaluator.comm`` (a ``Comm``)
                is where global sums (kinetic energy, degrees of freedom) go.

        Returns:
            the state, ``step`` advanced by 1 and ``time_fs`` by ``dt_fs``.
        """
        ...

    def target_temperature(self, time_fs: float) -> float | None:
        """The bath temperature (K) at ``time_fs``; None without a thermostat. A barostat wrapped around an integrator
        reads it (with ``dt_fs``), never the integrator's private attributes."""
        ...

    def converged(self, state, comm) -> bool:
        """True when a minimiser is done (collective over ``comm``); always False for dynamics."""
        ...

    def conserved_energy(self, state, comm) -> float:
        """The thermo log's conserved_eV (eV; collective over ``comm``)."""
        ...

    def state_dict(self) -> dict:
        """Variables a restart needs (thermostat chain, deformation origin...), JSON-serialisable."""
        ...

    def load_state_dict(self, d: dict) -> None:
        """Restore ``state_dict()``'s output."""
        ...


@runtime_checkable
class Reporter(Protocol):
    """Output of a Simulation (thermo log, trajectories, restarts, or your own): see reporters.py for when each is called.
    ``reports_last_step``: also called (``final=True``) after the last step of a run that is off its period."""

    every: int
    reports_last_step: bool

    def start(self, sim) -> None:
        """Before the first step of a run (collective)."""
        ...

    def report(self, sim, final: bool = False) -> None:
        """After a step that is a multiple of ``every`` or a minimisation's last step (collective)."""
        ...

    def close(self) -> None:
        """Release files."""
        ...


@runtime_checkable
class Guard(Protocol):
    """A check after every step (collective): raises ``SimulationError`` naming the step and atoms to stop the run."""

    def check(self, sim) -> None: ...


@runtime_checkable
class Comm(Protocol):
    """Every call the engine makes on a communicator: mpi4py's ``COMM_WORLD`` meets it, ``comm.SerialComm`` (``SERIAL``)
    is the one spelling of one process. The engine never probes for members (``scaling.pingpong`` alone also needs
    mpi4py's buffer ``Send``/``Recv``, and runs only under MPI)."""

    rank: int
    size: int

    def sendrecv(self, sendobj, dest: int = 0, source: int = 0):
        """Send ``sendobj`` to ``dest`` and return what ``source`` sent (ghost exchange, force return)."""
        ...

    def allreduce(self, x, op=None):
        """``x`` reduced over ranks (sum unless ``op``): kinetic energy, atom counts, guards, thermo."""
        ...

    def allgather(self, x) -> list:
        """``x`` of every rank, in rank order: gathered output, restart noise states, errors that must reach all ranks."""
        ...

    def alltoall(self, objs) -> list:
        """``objs[r]`` to rank r; returns what every rank sent here (atom migration)."""
        ...

    def bcast(self, obj, root: int = 0):
        """``obj`` of rank ``root`` on every rank."""
        ...

    def Barrier(self) -> None:
        """Wait for every rank (timing only)."""
        ...

    def Abort(self, errorcode: int = 1) -> None:
        """End every rank of the job now (a rank failed where the others cannot be told collectively)."""
        ...


class PotentialContractError(AssertionError):
    """A Potential implementation breaks the contract (the message says which check and by how much)."""


@dataclass
class ConformanceReport:
    """What ``check_potential`` measured (max deviations: eV, eV/A) on its test structure."""

    atoms: int
    edges: int
    checks: list[str] = field(default_factory=list)
    deviations: dict[str, float] = field(default_factory=dict)

    def require(
        self, ok: bool, name: str, detail: str, error: type[Exception], subject: object
    ) -> None:
        """Record check ``name``; raise ``error`` naming ``subject``'s type, the check and ``detail`` when not ``ok``."""
        if not ok:
            raise error(f"{type(subject).__name__}: {name}: {detail}")
        self.checks.append(name)


def _edges(positions: np.ndarray, cutoff: float) -> np.ndarray:
    d = np.linalg.norm(
        positions[None, :, :] - positions[:, None, :], axis=-1
    )  # small test clusters only
    i, j = np.nonzero((d < cutoff) & (d > 0))
    return np.stack([i, j]).astype(np.int64)


def test_cluster(potential, n_side: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A rattled simple-cubic cluster (spacing 0.55 x cutoff, n_side^3 atoms) of up to three of the potential's
    species: positions (A) and types. Neighbours sit well inside the cutoff, not on top of each other."""
    rng = np.random.default_rng(seed)
    g = (
        np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1)
        .reshape(-1, 3)
        .astype(np.float64)
    )
    pos = g * 0.55 * float(potential.cutoff) + rng.normal(
        0, 0.05 * float(potential.cutoff), g.shape
    )
    sp = list(potential.species)[:3]
    types = np.asarray(
        potential.types_of([sp[k % len(sp)] for k in range(len(pos))]), dtype=np.int64
    )
    return pos, types


def check_potential(
    potential,
    positions: np.ndarray | None = None,
    types: np.ndarray | None = None,
    *,
    energy_tol: float = 1e-8,
    force_tol: float = 1e-6,
    fd_step: float = 1e-4,
    fd_tol: float = 1e-5,
    fd_components: int = 6,
) -> ConformanceReport:
    """Check ``potential`` against the contract (module docstring) on an open cluster (default ``test_cluster``).

    Tolerances are absolute, in eV and eV/A: the defaults suit float64 models; float32 ones need about
    energy_tol 1e-4, force_tol 1e-4, fd_step 1e-3, fd_tol 5e-3. Raises ``PotentialContractError`` naming the
    failed check; returns a ``ConformanceReport`` of what was measured."""
    rep = ConformanceReport(0, 0)

    def check(ok: bool, name: str, detail: str) -> None:
        rep.require(ok, name, detail, PotentialContractError, potential)

    check(
        isinstance(potential, Potential),
        "members",
        "needs species, cutoff, types_of() and compute()",
    )
    check(
        all(isinstance(s, str) for s in potential.species) and len(potential.species) > 0,
        "species",
        "a tuple of element symbols",
    )
    check(float(potential.cutoff) > 0, "cutoff", f"must be > 0 A (got {potential.cutoff})")
    if positions is None:
        positions, types = test_cluster(potential)
    positions, types = np.asarray(positions, dtype=np.float64), np.asarray(types, dtype=np.int64)
    n = len(positions)
    ei = _edges(positions, potential.cutoff)
    rep.atoms, rep.edges = n, ei.shape[1]
    check(rep.edges > 0, "test structure", "has no edges within the cutoff")

    r = potential.compute(positions, types, ei, n)
    f, w, ea = np.asarray(r.forces), np.asarray(r.virial), np.asarray(r.atomic_energies)
    check(
        f.shape == (n, 3) and w.shape == (3, 3) and ea.shape == (n,),
        "shapes",
        f"forces {f.shape} (want {(n, 3)}), virial {w.shape} (3, 3), atomic_energies {ea.shape} ({(n,)})",
    )
    check(
        np.isfinite(float(r.energy)) and np.isfinite(f).all() and np.isfinite(w).all(),
        "finite",
        "NaN or inf in the result",
    )
    d = abs(float(ea.sum()) - float(r.energy))
    rep.deviations["energy - sum(atomic_energies)"] = d
    check(
        d <= energy_tol * max(1.0, n), "energy = sum of per-atom energies", f"differs by {d:.3g} eV"
    )

    if (
        ei[0] == n - 1
    ).any():  # with n_local = n - 1, atom n - 1 is a ghost and its edges are not allowed
        try:
            potential.compute(positions, types, ei, n - 1)
            refused = False
        except ValueError:
            refused = True
        check(
            refused,
            "ghost-centred edges refused",
            "an edge centred on a ghost atom must raise ValueError",
        )

    t = potential.compute(positions + np.array([3.1, -2.7, 1.9]), types, ei, n)
    d = abs(float(t.energy) - float(r.energy))
    rep.deviations["translation"] = d
    check(d <= energy_tol * max(1.0, n), "translation invariance", f"energy changes by {d:.3g} eV")
    d = float(np.abs(f.sum(axis=0)).max())
    rep.deviations["sum of forces"] = d
    check(d <= force_tol * max(1.0, n), "sum of forces = 0", f"{d:.3g} eV/A")

    wx = positions.T @ f
    d = float(np.abs(wx - w).max())
    rep.deviations["virial - sum x F"] = d
    check(
        d <= force_tol * max(1.0, n) * max(1.0, float(np.abs(positions).max())),
        "virial = sum x (x) F",
        f"differs by {d:.3g} eV",
    )

    # two ranks: each owns half of the atoms, holds the rest as ghosts and gets only its own edges
    mine = np.arange(n) < n // 2
    e_sum, f_sum = 0.0, np.zeros_like(f)
    for part in (mine, ~mine):
        order = np.concatenate([np.flatnonzero(part), np.flatnonzero(~part)])
        inv = np.empty(n, np.int64)
        inv[order] = np.arange(n)
        rp = potential.compute(
            positions[order], types[order], inv[ei[:, part[ei[0]]]], int(part.sum())
        )
        check(
            np.asarray(rp.atomic_energies).shape == (int(part.sum()),),
            "per-atom energies of local atoms only",
            f"shape {np.asarray(rp.atomic_energies).shape} for {int(part.sum())} local atoms",
        )
        e_sum += float(rp.energy)
        f_sum += np.asarray(rp.forces)[inv]
    d_e, d_f = abs(e_sum - float(r.energy)), float(np.abs(f_sum - f).max())
    rep.deviations["partition energy"], rep.deviations["partition forces"] = d_e, d_f
    check(
        d_e <= energy_tol * max(1.0, n) and d_f <= force_tol * max(1.0, n),
        "two-rank partition = whole",
        f"energy {d_e:.3g} eV, forces {d_f:.3g} eV/A (ghost energies must not enter)",
    )

    # periodic shifts = explicit ghost copies: put atom n-1's image at its own place through a shift
    shifted = positions.copy()
    s = np.array([7.0, 0.0, 0.0])
    shifted[n - 1] -= s
    sh = np.zeros((ei.shape[1], 3))
    sh[ei[1] == n - 1] = s
    sh[ei[0] == n - 1] = -s
    rs = potential.compute(shifted, types, ei, n, sh)
    d_e, d_f = (
        abs(float(rs.energy) - float(r.energy)),
        float(np.abs(np.asarray(rs.forces) - f).max()),
    )
    rep.deviations["shifts energy"], rep.deviations["shifts forces"] = d_e, d_f
    check(
        d_e <= energy_tol * max(1.0, n) and d_f <= force_tol * max(1.0, n),
        "edge shifts = explicit images",
        f"energy {d_e:.3g} eV, forces {d_f:.3g} eV/A",
    )

    rng = np.random.default_rng(1)
    worst = 0.0
    for k in rng.choice(n * 3, size=min(fd_components, n * 3), replace=False):
        a, c = divmod(int(k), 3)
        es = []
        for h in (fd_step, -fd_step):
            p = positions.copy()
            p[a, c] += h
            es.append(float(potential.compute(p, types, ei, n).energy))
        worst = max(worst, abs(-(es[0] - es[1]) / (2 * fd_step) - f[a, c]))
    rep.deviations["F + dE/dx"] = worst
    check(worst <= fd_tol, "F = -dE/dx (central differences)", f"max deviation {worst:.3g} eV/A")
    if isinstance(potential, PerAtomVirialPotential):
        _check_atomic_virials(potential, positions, types, ei, r, check, rep, force_tol)
    return rep


def _check_atomic_virials(potential, positions, types, ei, r, check, rep, force_tol) -> None:
    """Per-atom virials: shape, sum = virial, translation invariance, the same on a two-rank partition."""
    n = len(positions)
    was = potential.per_atom_virial
    potential.per_atom_virial = True
    try:
        a = potential.compute(positions, types, ei, n)
        t = potential.compute(positions + np.array([3.1, -2.7, 1.9]), types, ei, n)
        mine = np.arange(n) < n // 2
        order = np.concatenate([np.flatnonzero(mine), np.flatnonzero(~mine)])
        inv = np.empty(n, np.int64)
        inv[order] = np.arange(n)
        part = potential.compute(
            positions[order], types[order], inv[ei[:, mine[ei[0]]]], int(mine.sum())
        )
    finally:
        potential.per_atom_virial = was
    wa = None if a.atomic_virials is None else np.asarray(a.atomic_virials)
    check(
        wa is not None and wa.shape == (n, 3, 3),
        "per-atom virials",
        f"per_atom_virial = True must give atomic_virials of shape {(n, 3, 3)}",
    )
    tol = force_tol * max(1.0, n) * max(1.0, float(np.abs(positions).max()))
    d = float(np.abs(wa.sum(axis=0) - np.asarray(r.virial)).max())
    rep.deviations["virial - sum of per-atom virials"] = d
    check(d <= tol, "per-atom virials sum to the virial", f"differs by {d:.3g} eV")
    d = float(np.abs(np.asarray(t.atomic_virials) - wa).max())
    rep.deviations["per-atom virial translation"] = d
    check(d <= tol, "per-atom virials translation-invariant", f"change by {d:.3g} eV")
    d = float(np.abs(np.asarray(part.atomic_virials) - wa[mine]).max())
    rep.deviations["per-atom virial partition"] = d
    check(d <= tol, "per-atom virials local", f"a rank's atoms differ by {d:.3g} eV")
