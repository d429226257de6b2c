"""What a run would look like on P ranks, without running it (``allegro-fm-md run RUNFILE --dry-run [--ranks P]``):
the rank grid, local atoms, ghosts and edges per rank, and memory per rank, so a job's size is chosen before it queues.

Planned from the unit cell and the replicate counts, never from the whole system: a replicated structure's fractional
coordinate along each cell axis depends only on the unit atom and its image index along that axis, so the atoms of unit
atom ``a`` in the rank at grid coordinates (i, j, k) number ``H0[a, i] H1[a, j] H2[a, k]``, each factor counted on one
axis. Local atoms are exact; ghosts are the atoms of the halo-extended subdomain (the box the face-by-face exchange
fills) minus the local ones, exact too; edges are each unit atom's neighbours within the cutoff (and Verlet candidates
within cutoff + skin) times its atoms on the rank. Time and memory: O(unit atoms x (replicas + grid) per axis) and
O(unit atoms x ranks) for the per-rank sums: 10^9 atoms on 65 536 ranks in seconds.

Memory per rank = the process's own baseline (interpreter, libraries, the model's weights: measured in the planning
process after loading the potential) + the engine's arrays (``ENGINE_BYTES_PER_ATOM`` per local or ghost atom,
``ENGINE_BYTES_PER_EDGE`` per candidate pair) + the model's activations (bytes per edge, measured once on a probe of the
structure with the potential and device of the run file, times the rank's edges), or "unknown" where the device's
memory cannot be measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

from .comm import Decomposition, choose_grid
from .errors import MDInputError
from .forces import ForceEvaluator
from .ghosts import plane_spacings
from .memory import peak_meter

#: engine bytes per atom held on a rank (positions, velocities, forces, masses, ids, types, Verlet reference, ghosts'
#: send lists and the exchange's temporaries, float64) and per candidate pair (int64 pair + the cutoff test's temporaries)
ENGINE_BYTES_PER_ATOM, ENGINE_BYTES_PER_EDGE = 400, 64


@dataclass(frozen=True)
class RankPlan:
    """One rank: its grid coordinates, local atoms, ghosts, edges within the cutoff, memory (bytes)."""

    rank: int
    coords: tuple[int, int, int]
    local: int
    ghosts: int
    edges: int
    engine_bytes: int
    model_bytes: int | None


@dataclass(frozen=True)
class Plan:
    """The decomposition of ``atoms`` atoms over ``grid``. ``ranks``: the rows shown (all ranks up to 16, else the
    three smallest and three largest); ``largest``: the rank with the most memory; ``base_bytes``: each process's
    baseline (None: not measured)."""

    grid: tuple[int, int, int]
    atoms: int
    n_ranks: int
    halo: float
    edges_per_atom: float
    ranks: list[RankPlan]
    largest: RankPlan
    base_bytes: int | None = None
    bytes_per_edge: float | None = None
    empty_ranks: int = 0

    def rank_bytes(self, r: RankPlan) -> int | None:
        """Memory of rank ``r`` (bytes): baseline + engine + model, None when a part is unknown."""
        if r.model_bytes is None or self.base_bytes is None:
            return None
        return self.base_bytes + r.engine_bytes + r.model_bytes

    def table(self) -> str:
        """A markdown table (see ``ranks``) and a summary line with the largest rank."""
        out = [
            f"rank grid {self.grid[0]} x {self.grid[1]} x {self.grid[2]} for {self.n_ranks} ranks, {self.atoms} atoms, halo "
            f"{self.halo:.2f} A, {self.edges_per_atom:.1f} edges per atom within the cutoff",
            "",
            "| rank | grid coords | local atoms | ghosts | edges | engine MiB | model MiB |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.ranks:
            model = f"{r.model_bytes / 2**20:.1f}" if r.model_bytes is not None else "unknown"
            out.append(
                f"| {r.rank} | {r.coords} | {r.local} | {r.ghosts} | {r.edges} | {r.engine_bytes / 2**20:.1f} | {model} |"
            )
        w = self.largest
        total = self.rank_bytes(w)
        base = (
            f"{self.base_bytes / 2**20:.0f} MiB process baseline"
            if self.base_bytes is not None
            else "an unmeasured baseline"
        )
        per_edge = (
            f"{self.bytes_per_edge:.0f} bytes per edge measured"
            if self.bytes_per_edge is not None
            else "the model's memory per edge not measurable on this device"
        )
        out += [
            "",
            f"largest rank: {w.local} atoms + {w.ghosts} ghosts, {w.edges} edges: "
            + (
                f"{total / 2**30:.2f} GiB ({base}, {per_edge})"
                if total is not None
                else f"{w.engine_bytes / 2**30:.2f} GiB for the engine, plus {base} and the model ({per_edge})"
            ),
        ]
        if self.empty_ranks:
            out.append(
                f"{self.empty_ranks} rank(s) hold no atoms (vacuum, or more ranks than the structure fills): they run and "
                "idle; fewer ranks would do the same work"
            )
        return "\n".join(out)


def _images_in(f: np.ndarray, reps: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(n, grid): how many integers i in [0, reps) put (f + i) / reps in [lo, hi), for each f and each interval."""
    a = np.ceil(lo[None, :] * reps - f[:, None])
    b = np.ceil(hi[None, :] * reps - f[:, None])
    return np.maximum(0, np.minimum(b, reps) - np.maximum(a, 0)).astype(np.int64)


def _axis_counts(
    frac_unit: np.ndarray, reps: int, grid: int, hfrac: float, periodic: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(local, extended) counts (unit atoms x grid) along one axis: how many images i in [0, reps) of each unit atom
    have supercell fractional coordinate (f + i) / reps in rank slab c = [c / grid, (c + 1) / grid), and in that slab
    widened by ``hfrac`` on both sides (with the periodic images along a periodic axis). Closed form per (atom, slab),
    in blocks of atoms: no array of images is made."""
    f = np.asarray(frac_unit, np.float64)
    if periodic:
        f = f - np.floor(f)
    else:  # beyond the box along an open axis: the edge ranks (exact for one replica, the usual case)
        f = np.clip(f, 0.0, 1.0 - 1e-12)
    lo, hi = np.arange(grid) / grid, np.arange(1, grid + 1) / grid
    local, ext = np.empty((len(f), grid), np.int64), np.zeros((len(f), grid), np.int64)
    for s in range(0, len(f), 1 << 14):
        fb = f[s : s + (1 << 14)]
        local[s : s + len(fb)] = _images_in(fb, reps, lo, hi)
        for shift in (
            (-1.0, 0.0, 1.0) if periodic else (0.0,)
        ):  # an image one cell over lies shift * reps images away
            ext[s : s + len(fb)] += _images_in(fb + shift * reps, reps, lo - hfrac, hi + hfrac)
    return local, ext


def _neighbour_counts(unit, reps, *cutoffs: float) -> list[np.ndarray]:
    """Neighbours within each of ``cutoffs`` (A) of each unit atom in the replicated structure, from one neighbour list
    at the largest (ase's, on the unit cell with its periodicity; along an open axis the replicas' neighbours are not
    counted)."""
    if len(unit) == 0:
        return [np.zeros(0) for _ in cutoffs]
    pbc = np.asarray(unit.pbc, bool)
    probe = unit.copy()
    if (
        not pbc.all()
    ):  # an open axis with replicas: count within the replicated block (small structures only)
        probe = unit * tuple(int(r) if not p else 1 for r, p in zip(reps, pbc, strict=True))
    i, d = neighbor_list("id", probe, max(cutoffs), self_interaction=False)
    return [
        np.bincount(i[d < c], minlength=len(probe))[: len(unit)].astype(np.float64) for c in cutoffs
    ]


def measure_bytes_per_edge(
    unit, potential, skin: float = 1.0, target_edges: int = 16384
) -> float | None:
    """The potential's peak memory per edge (bytes) in one force call on a probe of the structure: ``unit`` replicated
    until it holds about ``target_edges`` edges (and spans twice the halo along periodic axes). None where the device's
    memory cannot be measured (memory.peak_meter)."""
    inner = getattr(potential, "inner", potential)  # the model itself, not the chunking around it
    nn = max(
        float(_neighbour_counts(unit, (1, 1, 1), inner.cutoff)[0].mean()) if len(unit) else 0.0, 1.0
    )
    need = max(1, int(np.ceil(target_edges / (nn * max(len(unit), 1)))))
    widths = plane_spacings(np.array(unit.cell)) if np.asarray(unit.pbc).all() else np.ones(3)
    reps = [1, 1, 1]
    for d in range(3):
        if unit.pbc[d]:
            reps[d] = max(1, int(np.ceil(2.0 * (inner.cutoff + skin) / widths[d])))
    while np.prod(reps) < need:
        d = int(
            np.argmin(
                [r * w if p else np.inf for r, w, p in zip(reps, widths, unit.pbc, strict=True)]
            )
        )
        if not unit.pbc[d]:
            break
        reps[d] += 1
    probe = unit * tuple(reps)
    ev = ForceEvaluator(inner, inner.types_of(probe.get_chemical_symbols()), skin=skin)
    ev.compute(
        probe.positions, np.array(probe.cell), probe.pbc
    )  # lists built, model warmed up outside the meter
    edges = int(ev.verlet.edges(ev._all_positions(probe.positions)).shape[1])
    with peak_meter(str(getattr(inner, "device", "cpu"))) as m:
        ev.compute(probe.positions, np.array(probe.cell), probe.pbc)
    return None if m["bytes"] is None or edges == 0 else max(m["bytes"], 1) / edges


def plan_supercell(
    unit,
    reps,
    cutoff: float,
    skin: float,
    n_ranks: int,
    bytes_per_edge: float | None = None,
    base_bytes: int | None = None,
    call_edges: int | None = None,
) -> Plan:
    """The Plan of ``unit`` (ase.Atoms) replicated ``reps`` times on ``n_ranks`` ranks, never building the system (see
    the module docstring); MDInputError when the cell is thinner than the halo (cutoff + skin, A); ranks left empty
    are counted (``empty_ranks``), not refused: the engine runs them. ``bytes_per_edge``: the model's activations per
    edge; ``base_bytes``: each process's baseline; ``call_edges``: the most edges one model call sees (the engine's
    chunking: the CPU cap, or [potential] max_edges_per_call), which bounds the model's activations."""
    if int(n_ranks) < 1:
        raise MDInputError(f"{n_ranks} ranks: must be >= 1")
    reps = tuple(int(r) for r in reps)
    cell = np.array(unit.cell) * np.array(reps)[:, None]
    pbc = np.asarray(unit.pbc, dtype=bool).reshape(3)
    halo = float(cutoff) + float(skin)
    grid = choose_grid(int(n_ranks), cell)

    class _Rank:
        rank, size = 0, int(n_ranks)

    try:
        Decomposition(
            _Rank(), cell, grid, halo, pbc
        )  # the thin-subdomain check, named by the decomposition
    except ValueError as exc:
        raise MDInputError(f"{n_ranks} ranks: {exc}") from exc
    frac = unit.get_scaled_positions(wrap=False)
    hfrac = halo / plane_spacings(cell)
    loc, ext = zip(
        *(_axis_counts(frac[:, d], reps[d], grid[d], hfrac[d], bool(pbc[d])) for d in range(3)),
        strict=True,
    )
    nn_cut, nn_halo = _neighbour_counts(unit, reps, cutoff, halo)
    local = np.einsum(
        "ai,aj,ak->ijk", *loc
    ).ravel()  # rank r = (i * g1 + j) * g2 + k, as Decomposition numbers them
    empty = int((local == 0).sum())  # they run (and idle): reported, not refused
    box = np.einsum("ai,aj,ak->ijk", *ext).ravel()
    edges = np.einsum("ai,aj,ak,a->ijk", *loc, nn_cut).ravel()
    cand = np.einsum("ai,aj,ak,a->ijk", *loc, nn_halo).ravel()
    ghosts = np.maximum(box - local, 0)
    engine = ENGINE_BYTES_PER_ATOM * (local + ghosts) + ENGINE_BYTES_PER_EDGE * cand
    model = (
        None
        if bytes_per_edge is None
        else bytes_per_edge * (np.minimum(edges, call_edges) if call_edges else edges)
    )

    def row(r: int) -> RankPlan:
        g = (r // (grid[1] * grid[2]), (r // grid[2]) % grid[1], r % grid[2])
        return RankPlan(
            int(r),
            g,
            int(local[r]),
            int(ghosts[r]),
            int(round(edges[r])),
            int(engine[r]),
            None if model is None else int(model[r]),
        )

    order = np.argsort(local, kind="stable")
    shown = range(n_ranks) if n_ranks <= 16 else [*order[:3], *order[-3:]]
    worst = int(np.argmax(engine + (model if model is not None else 0)))
    n_atoms = len(unit) * int(np.prod(reps))
    return Plan(
        tuple(int(g) for g in grid),
        n_atoms,
        int(n_ranks),
        halo,
        float(nn_cut.mean()) if len(nn_cut) else 0.0,
        [row(int(r)) for r in shown],
        row(worst),
        base_bytes,
        bytes_per_edge,
        empty,
    )


def plan(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc,
    cutoff: float,
    skin: float,
    n_ranks: int,
    memory_per_edge_bytes: float | None = None,
) -> Plan:
    """The Plan of a whole structure given by its positions (A), cell and pbc (``plan_supercell`` with one replica)."""
    unit = Atoms(["X"] * len(positions), positions=positions, cell=cell, pbc=pbc)
    return plan_supercell(unit, (1, 1, 1), cutoff, skin, n_ranks, memory_per_edge_bytes)
