"""What a run would look like on P ranks, without running it (``allegro-fm-md run RUNFILE --dry-run [--ranks P]``):
the rank grid, local atoms, ghosts and edges per rank, and memory per rank, so a job's size is chosen before it queues.

Ghosts are counted on a histogram of fractional coordinates whose bins are no wider than the halo, summing the bins of
each subdomain's halo-extended box (with periodic images): exact for local atoms, an upper bound within one bin for
ghosts. Edges per atom are the structure's mean number of neighbours within cutoff + skin. Memory per rank: the engine's
arrays per atom and edge, plus the potential's own per-edge figure when it declares ``memory_per_edge_bytes`` (a model's
activations grow with its edges: issue #19), else marked unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .comm import Decomposition, choose_grid
from .errors import MDInputError
from .ghosts import plane_spacings, wrap

#: engine bytes per atom held on a rank (positions, velocities, forces, masses, ids, types, Verlet reference, ghosts'
#: send lists, float64) and per edge (int64 pair + the cutoff test's temporaries)
ENGINE_BYTES_PER_ATOM, ENGINE_BYTES_PER_EDGE = 400, 64


@dataclass(frozen=True)
class RankPlan:
    """One rank: its grid coordinates, local atoms, ghosts (upper bound within a histogram bin), edges, memory (bytes)."""

    rank: int
    coords: tuple[int, int, int]
    local: int
    ghosts: int
    edges: int
    engine_bytes: int
    model_bytes: int | None


@dataclass(frozen=True)
class Plan:
    """The decomposition of ``atoms`` atoms over ``grid``; ``ranks`` per rank (see RankPlan)."""

    grid: tuple[int, int, int]
    atoms: int
    halo: float
    edges_per_atom: float
    ranks: list[RankPlan]

    def table(self) -> str:
        """A markdown table, one row per rank (the first 16 and the extremes when there are more), and a summary."""
        rows = self.ranks if len(self.ranks) <= 16 else sorted(self.ranks, key=lambda r: r.local)[:3] + \
            sorted(self.ranks, key=lambda r: r.local)[-3:]
        out = [f"rank grid {self.grid[0]} x {self.grid[1]} x {self.grid[2]} for {len(self.ranks)} ranks, {self.atoms} atoms, halo "
               f"{self.halo:.2f} A, {self.edges_per_atom:.1f} edges per atom",
               "", "| rank | grid coords | local atoms | ghosts (<=) | edges | engine MiB | model MiB |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            model = f"{r.model_bytes / 2**20:.0f}" if r.model_bytes is not None else "unknown"
            out.append(f"| {r.rank} | {r.coords} | {r.local} | {r.ghosts} | {r.edges} | {r.engine_bytes / 2**20:.1f} | {model} |")
        worst = max(self.ranks, key=lambda r: r.engine_bytes + (r.model_bytes or 0))
        out.append("")
        out.append(f"largest rank: {worst.local} atoms + {worst.ghosts} ghosts, "
                   f"{(worst.engine_bytes + (worst.model_bytes or 0)) / 2**30:.2f} GiB"
                   + ("" if worst.model_bytes is not None else " plus the model's own memory (the potential declares none)"))
        return "\n".join(out)


def plan(positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float, skin: float, n_ranks: int,
         memory_per_edge_bytes: float | None = None) -> Plan:
    """The Plan of a run on ``n_ranks`` ranks; MDInputError when the grid would leave a rank empty or thinner than the
    halo (cutoff + skin, A)."""
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    halo = float(cutoff) + float(skin)
    grid = choose_grid(n_ranks, cell)

    class _Rank:
        def __init__(self, r):
            self.rank, self.size = r, n_ranks

    try:
        decs = [Decomposition(_Rank(r), cell, grid, halo, pbc) for r in range(n_ranks)]
    except ValueError as exc:  # too thin: named by the decomposition
        raise MDInputError(f"{n_ranks} ranks: {exc}") from exc
    frac = wrap(positions, cell, pbc) @ np.linalg.inv(cell)
    owner = decs[0].owner(frac)
    local = np.bincount(owner, minlength=n_ranks)
    empty = np.flatnonzero(local == 0)
    if len(empty):
        raise MDInputError(f"{n_ranks} ranks on a {grid[0]} x {grid[1]} x {grid[2]} grid leave {len(empty)} rank(s) without atoms "
                           f"(rank {int(empty[0])} first): use fewer ranks or a larger system")
    # histogram with bins no wider than the halo (and a whole number of bins per subdomain)
    hfrac = halo / plane_spacings(cell)
    per = np.maximum(1, np.floor((1.0 / np.array(grid)) / hfrac)).astype(int)
    nb = np.array(grid) * per
    f = np.clip(frac, 0.0, 1.0 - 1e-12)
    idx = np.minimum((f * nb).astype(int), nb - 1)
    hist = np.zeros(tuple(nb), dtype=np.int64)
    np.add.at(hist, tuple(idx.T), 1)
    ext = np.ceil(hfrac * nb).astype(int)  # bins of halo on each side
    density = len(positions) / abs(np.linalg.det(cell))
    edges_per_atom = density * 4.0 / 3.0 * np.pi * halo**3
    ranks = []
    for r, dec in enumerate(decs):
        lo = np.array(dec.coords) * per
        sel = []
        for d in range(3):
            ids = np.arange(lo[d] - ext[d], lo[d] + per[d] + ext[d])
            ids = ids % nb[d] if pbc[d] else ids[(ids >= 0) & (ids < nb[d])]
            sel.append(ids)
        total = int(hist[np.ix_(*sel)].sum())
        ghosts = max(total - int(local[r]), 0)
        edges = int(round(edges_per_atom * local[r]))
        engine = ENGINE_BYTES_PER_ATOM * (int(local[r]) + ghosts) + ENGINE_BYTES_PER_EDGE * edges
        model = None if memory_per_edge_bytes is None else int(memory_per_edge_bytes * edges)
        ranks.append(RankPlan(r, tuple(int(c) for c in dec.coords), int(local[r]), ghosts, edges, engine, model))
    return Plan(tuple(int(g) for g in grid), len(positions), halo, float(edges_per_atom), ranks)
