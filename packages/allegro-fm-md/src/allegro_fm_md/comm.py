"""Spatial decomposition over MPI: where ghosts are exchanged, forces sent back and atoms migrate.

The periodic cell (orthorhombic or triclinic) is cut into a px x py x pz grid of parallelepipeds in
fractional coordinates; each rank owns the atoms inside its own. Ghosts within the halo
h = cutoff + skin are exchanged face by face, one dimension after the other (x, then y, then z, each
sweep forwarding the ghosts received in the previous ones, which fills edges and corners), with the
periodic image shift applied where a message crosses the cell boundary (LAMMPS's comm scheme). A subdomain
thinner than h takes ceil(h / width) swaps per direction, each forwarding what the last one brought, so any
rank grid runs (strong scaling past the point where a subdomain is one halo wide; empty subdomains too). The
same send lists move positions every step (forward) and bring ghost forces back to their owners
(reverse, in the opposite order). Atoms migrate to their new owner when the lists are rebuilt.
Works without MPI installed (``SerialComm``: the one spelling of one process) and on one rank the exchange produces the
periodic images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .errors import MDInputError
from .ghosts import plane_spacings


class SerialComm:
    """The engine's ``Comm`` contract (contracts.py) for one process: the one spelling of "no MPI" everywhere (``SERIAL``),
    never ``None``. Every collective returns what one rank would get."""

    rank, size = 0, 1

    def sendrecv(self, sendobj, dest=0, source=0):
        """The object itself (this rank is its own neighbour: periodic images on one rank)."""
        return sendobj

    def allreduce(self, value, op=None):
        """``value`` (the sum, or ``op``, over one rank)."""
        return value

    def alltoall(self, objs):
        """``objs`` as a list (one rank sends to itself)."""
        return list(objs)

    def allgather(self, obj):
        """``[obj]``."""
        return [obj]

    def bcast(self, obj, root=0):
        """``obj``."""
        return obj

    def Barrier(self):
        """Nothing to wait for."""

    def Abort(self, errorcode: int = 1):
        """Stop this process with ``errorcode`` (mpi4py's Abort ends every rank; here there is one)."""
        raise SystemExit(errorcode)


#: the serial communicator: every engine call that takes a ``comm`` defaults to it
SERIAL = SerialComm()


def agree(comm, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on every rank of ``comm`` (a collective point: set-up, restart read, shard write), and
    every rank learns whether it failed anywhere: the lowest failing rank's error is raised on all ranks (MDInputError,
    naming that rank when there are several, for bad input; CollectiveFailure otherwise), never one rank alone while
    the others wait in the next collective. Returns ``fn``'s result on this rank."""
    try:
        out, mine = fn(*args, **kwargs), None
    except (MDInputError, OSError, ValueError) as exc:
        out, mine = None, ("input", str(exc))
    except Exception as exc:  # noqa: BLE001  (any failure must reach every rank)
        out, mine = None, ("fault", f"{type(exc).__name__}: {exc}")
    errors = comm.allgather(mine)
    bad = [(r, e) for r, e in enumerate(errors) if e is not None]
    if bad:
        rank, (kind, text) = bad[0]
        where = f"rank {rank}: " if comm.size > 1 else ""
        raise (MDInputError if kind == "input" else CollectiveFailure)(f"{where}{text}")
    return out


class CollectiveFailure(RuntimeError):
    """A fault on some rank at a collective point, raised on every rank together by ``agree`` (the command line prints
    it once, from rank 0, and every rank exits 1: no MPI_Abort needed)."""


def world():
    """mpi4py's COMM_WORLD when mpi4py is importable, else a SerialComm."""
    try:
        from mpi4py import MPI  # lazy: optional [mpi] extra; importing it initialises MPI

        return MPI.COMM_WORLD
    except ImportError:
        return SerialComm()


#: launcher variables that hold a process's rank on its node (Slurm, PBS/PALS on Aurora-class machines, Open MPI, MPICH)
LOCAL_RANK_VARIABLES = (
    "SLURM_LOCALID",
    "PALS_LOCAL_RANKID",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MPI_LOCALRANKID",
    "MV2_COMM_WORLD_LOCAL_RANK",
)


def node_local_rank(comm=None, environ=None) -> tuple[int, int]:
    """(rank on this node, ranks on this node): from an MPI shared-memory split of ``comm`` (the ranks that share a
    node's memory) when it is an mpi4py communicator, else from the launcher's variables, else (0, 1). Accelerators are
    bound by this rank, never by the global rank modulo the device count (wrong once nodes hold different rank counts)."""
    split = getattr(comm, "Split_type", None)
    if split is not None:
        from mpi4py import MPI  # lazy: only reached with an mpi4py communicator

        local = split(MPI.COMM_TYPE_SHARED)
        try:
            return int(local.Get_rank()), int(local.Get_size())
        finally:
            local.Free()
    env = os.environ if environ is None else environ
    for var in LOCAL_RANK_VARIABLES:
        if var in env:
            size = next(
                (
                    int(env[v])
                    for v in (
                        "SLURM_NTASKS_PER_NODE",
                        "PALS_LOCAL_SIZE",
                        "OMPI_COMM_WORLD_LOCAL_SIZE",
                        "MPI_LOCALNRANKS",
                    )
                    if v in env and env[v].isdigit()
                ),
                int(env[var]) + 1,
            )
            return int(env[var]), size
    return 0, 1


def _max_op(comm):
    try:
        from mpi4py import MPI  # lazy: optional [mpi] extra; importing it initialises MPI

        return MPI.MAX if not isinstance(comm, SerialComm) else None
    except ImportError:
        return None


def choose_grid(size: int, cell: np.ndarray) -> tuple[int, int, int]:
    """The px*py*pz = size grid whose subdomains are closest to cubes (smallest surface)."""
    spacing = plane_spacings(cell)
    best, best_cost = (size, 1, 1), np.inf
    for px in range(1, size + 1):
        if size % px:
            continue
        for py in range(1, size // px + 1):
            if (size // px) % py:
                continue
            pz = size // px // py
            w = spacing / np.array([px, py, pz])
            cost = (1 / w).sum()  # surface / volume of a subdomain
            if cost < best_cost - 1e-12:
                best, best_cost = (px, py, pz), cost
    return best


@dataclass
class _Swap:
    """One message of the exchange: what this rank sends where, and where the received ghosts go."""

    dim: int
    dest: int
    source: int
    send_idx: np.ndarray
    shift: np.ndarray  # Cartesian image shift (A) added to sent positions
    fshift: float  # fractional shift along dim
    recv_start: int = 0
    recv_count: int = 0


@dataclass
class Decomposition:
    """The rank grid over ``cell`` and this rank's subdomain [lo, hi) in fractional coordinates."""

    comm: object
    cell: np.ndarray
    grid: tuple[int, int, int]
    halo: float
    #: periodic axes (default all): along an open axis there are no images and atoms beyond the box belong to the edge ranks
    pbc: np.ndarray = field(default_factory=lambda: np.ones(3, bool))
    coords: tuple[int, int, int] = field(init=False)
    lo: np.ndarray = field(init=False)
    hi: np.ndarray = field(init=False)
    hops: tuple[int, int, int] = field(init=False)

    def __post_init__(self):
        self.cell = np.asarray(self.cell, dtype=np.float64)
        self.pbc = np.asarray(self.pbc, dtype=bool).reshape(3)
        g = np.array(self.grid)
        if int(np.prod(g)) != self.comm.size:
            raise ValueError(f"rank grid {self.grid} does not have {self.comm.size} ranks")
        r = self.comm.rank
        self.coords = (r // (g[1] * g[2]), (r // g[2]) % g[1], r % g[2])
        self.lo = np.array(self.coords) / g
        self.hi = (np.array(self.coords) + 1) / g
        spacing = plane_spacings(self.cell)
        width = spacing / g
        #: swaps per dimension and direction: 1 while a subdomain is at least the halo wide, more for thinner ones
        self.hops = tuple(
            int(max(1, np.ceil(self.halo / w - 1e-12))) if g[d] > 1 else 1
            for d, w in enumerate(width)
        )
        small = np.flatnonzero(self.pbc & (spacing < self.halo))
        if len(small):
            d = int(small[0])
            raise MDInputError(
                f"the cell is thinner than cutoff + skin along {'xyz'[d]} ({spacing[d]:.3f} A < {self.halo:.3f} A): "
                "an atom would need images beyond the next cell; replicate the cell"
            )

    def rank_of(self, coords) -> int:
        g = self.grid
        return int(((coords[0] % g[0]) * g[1] + (coords[1] % g[1])) * g[2] + (coords[2] % g[2]))

    def owner(self, frac: np.ndarray) -> np.ndarray:
        """Rank owning each fractional position (wrapped into [0, 1) along periodic axes; beyond the box along an open
        axis: the edge rank)."""
        f = np.where(self.pbc, frac - np.floor(frac), frac)
        f = np.where(
            self.pbc & (f >= 1.0), 0.0, f
        )  # frac = -1e-17 rounds to 1.0 above: the atom is at 0 (as ghosts.wrap leaves it)
        c = np.floor(f * np.array(self.grid)).astype(np.int64)
        c = np.clip(c, 0, np.array(self.grid) - 1)
        return (c[:, 0] * self.grid[1] + c[:, 1]) * self.grid[2] + c[:, 2]


class GhostExchange:
    """Send lists of one neighbour-list period: build (with the halo), forward positions, reverse forces."""

    def __init__(self, dec: Decomposition):
        self.dec = dec
        self.swaps: list[_Swap] = []
        self.n_local = 0

    def build(self, positions: np.ndarray, types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exchange ghosts for local ``positions`` (inside this subdomain); returns (all positions, all types).

        Along each dimension and direction the first swap sends the atoms within the halo of the face (local ones and
        the ghosts of earlier dimensions); when the subdomain is thinner than the halo, further swaps forward what the
        previous swap brought, still filtered by the same face distance, until the halo is covered: ceil(halo / width)
        swaps, reaching that many ranks away (LAMMPS's multi-swap comm for a cutoff beyond the neighbour subdomain)."""
        dec, comm = self.dec, self.dec.comm
        inv = np.linalg.inv(dec.cell)
        hfrac = dec.halo / plane_spacings(dec.cell)
        pos, typ = np.array(positions, dtype=np.float64), np.asarray(types)
        frac = pos @ inv
        self.n_local = len(pos)
        self.swaps = []
        for d in range(3):
            m = len(
                pos
            )  # candidates of the first swap: local atoms and ghosts of the previous dimensions
            for direction in (-1, +1):
                c = list(dec.coords)
                c[d] += direction
                dest = dec.rank_of(c)
                c[d] -= 2 * direction
                source = dec.rank_of(c)
                if direction < 0:
                    fshift = 1.0 if dec.coords[d] == 0 else 0.0
                else:
                    fshift = -1.0 if dec.coords[d] == dec.grid[d] - 1 else 0.0
                cand = np.arange(m)
                for _ in range(dec.hops[d]):
                    f = frac[cand, d]
                    sel = (
                        cand[f < dec.lo[d] + hfrac[d]]
                        if direction < 0
                        else cand[f >= dec.hi[d] - hfrac[d]]
                    )
                    if (
                        fshift and not dec.pbc[d]
                    ):  # across the box's face along an open axis: no images
                        sel = sel[:0]
                    shift = fshift * dec.cell[d]
                    sw = _Swap(d, dest, source, sel, shift, fshift)
                    out_frac = frac[sel].copy()
                    out_frac[:, d] += fshift
                    got = comm.sendrecv(
                        (pos[sel] + shift, typ[sel], out_frac), dest=dest, source=source
                    )
                    sw.recv_start, sw.recv_count = len(pos), len(got[0])
                    pos = np.concatenate([pos, got[0]])
                    typ = np.concatenate([typ, got[1]])
                    frac = np.concatenate([frac, got[2]])
                    self.swaps.append(sw)
                    cand = np.arange(
                        sw.recv_start, sw.recv_start + sw.recv_count
                    )  # the next hop forwards these
        return pos, typ

    def forward(self, local_positions: np.ndarray) -> np.ndarray:
        """All positions (local + ghosts) for new local positions, with the stored send lists."""
        comm = self.dec.comm
        pos = np.array(local_positions, dtype=np.float64)
        for sw in self.swaps:
            got = comm.sendrecv(pos[sw.send_idx] + sw.shift, dest=sw.dest, source=sw.source)
            pos = np.concatenate([pos, got])
        return pos

    def reverse(self, forces: np.ndarray) -> np.ndarray:
        """Local forces with every ghost's force added to its owner (messages in reverse order)."""
        comm = self.dec.comm
        f = np.array(forces, dtype=np.float64)
        for sw in reversed(self.swaps):
            back = comm.sendrecv(
                f[sw.recv_start : sw.recv_start + sw.recv_count], dest=sw.source, source=sw.dest
            )
            np.add.at(f, sw.send_idx, back)
        return f[: self.n_local]


def migrate(dec: Decomposition, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Send every atom to the rank owning its (wrapped) position; ``arrays`` hold per-atom data incl.
    "positions". Returns this rank's new per-atom arrays (order: by source rank, then original order)."""
    comm = dec.comm
    frac = arrays["positions"] @ np.linalg.inv(dec.cell)
    owner = dec.owner(frac)
    outgoing = [{k: v[owner == r] for k, v in arrays.items()} for r in range(comm.size)]
    incoming = comm.alltoall(outgoing)
    return {k: np.concatenate([inc[k] for inc in incoming]) for k in arrays}
