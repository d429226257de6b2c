"""Trajectory analysis: partial radial distribution functions g_ab(r) and coordination numbers.

Pairs come from the engine's own periodic halo and cell lists (any cell shape, r_max may exceed half
the box). g_ab(r) = V / (N_a N_b') * n_ab(r) / (4 pi r^2 dr), N_b' = N_b - delta_ab, averaged over
frames; the coordination number of b around a up to r_c is the mean count of b within r_c of an a.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from tea_align.files import save_figure

from . import keys as K
from .errors import MDInputError
from .ghosts import periodic_halo, wrap
from .neighbor import build_edges


def read_frames(path: str | Path, every: int = 1) -> list[Atoms]:
    """Frames of an H5MD file written by allegro-fm-md (.h5; info["step"], info["time_fs"] set) or of anything ase.io reads."""
    path = Path(path)
    if path.suffix in (".h5", ".h5md", ".hdf5"):
        import h5py  # lazy: HDF5 only for .h5 files

        try:
            with h5py.File(path, "r") as h5:
                z = h5[K.H5MD_SPECIES][()]
                position, edges = h5[K.H5MD_POSITION], h5[K.H5MD_BOX_EDGES]
                pos = position["value"][::every]
                box = edges["value"][::every]
                steps = position["step"][::every] if "step" in position else np.zeros(len(pos), int)
                times = position["time"][::every] if "time" in position else np.zeros(len(pos))
                pbc = [b == b"periodic" for b in h5[K.H5MD_PARTICLES]["box"].attrs["boundary"]]
        except (OSError, KeyError) as exc:
            raise MDInputError(f"{path}: not a readable H5MD trajectory ({exc})") from exc
        frames = [Atoms(numbers=z, positions=x, cell=c, pbc=pbc) for x, c in zip(pos, box)]
        for a, st, t in zip(frames, steps, times):
            a.info.update(step=int(st), time_fs=float(t))
        return frames
    return ase.io.read(path, f"::{every}")


#: width (A) of the moving average that ``RDF.first_shell`` reads peaks and minima off (at least 3 bins)
SMOOTH_A = 0.1


@dataclass(frozen=True)
class RDF:
    """Partial g(r) of element pairs: r (A, bin centres), g[pair] (dimensionless, symmetric in the pair),
    pair_counts[pair](r): cumulative a-b pairs per frame, atoms[element]: atoms per frame."""

    r: np.ndarray
    g: dict[tuple[str, str], np.ndarray]
    pair_counts: dict[tuple[str, str], np.ndarray]
    atoms: dict[str, float]
    frames: int

    def __getitem__(self, pair: tuple[str, str]) -> np.ndarray:
        return self.g[pair] if pair in self.g else self.g[pair[::-1]]

    def running_coordination(self, pair: tuple[str, str]) -> np.ndarray:
        """Mean number of ``pair[1]`` atoms within r of a ``pair[0]`` atom, at each r."""
        c = self.pair_counts[pair] if pair in self.pair_counts else self.pair_counts[pair[::-1]]
        return c / max(self.atoms[pair[0]], 1e-300)

    def first_shell(self, pair: tuple[str, str]) -> FirstShell:
        """The first coordination shell of ``pair``, peak and minimum read off the same smoothed g(r) (a moving average
        over ``SMOOTH_A``, at least 3 bins: 3 at the default 0.05 A bins): the first
        local maximum above max(1, 0.3 max g), then the first local minimum after it (the shell's r_cut), and the
        coordination number at that r_cut. All NaN (coordination 0) when g never rises above that level."""
        g, n = self[pair], self.running_coordination(pair)
        width = (
            max(3, 2 * int(round(SMOOTH_A / (2 * (self.r[1] - self.r[0])))) + 1)
            if len(self.r) > 1
            else 1
        )
        # a ~0.1 A (at least 3-bin) window against noise
        gs = np.convolve(g, np.ones(width) / width, mode="same")
        above = np.flatnonzero(gs > max(1.0, 0.3 * gs.max()))
        if len(above) == 0:
            return FirstShell(float("nan"), float("nan"), float("nan"), 0.0)
        top = int(above[0])
        while top + 1 < len(gs) and gs[top + 1] >= gs[top]:
            top += 1
        start = top  # a flat top (a 0 K crystal's one-bin spike, averaged): the peak is the plateau's middle
        while start > 0 and np.isclose(gs[start - 1], gs[top], rtol=1e-12, atol=0.0):
            start -= 1
        k = top
        while k + 1 < len(gs) and gs[k + 1] < gs[k]:
            k += 1
        peak = (start + top) // 2
        return FirstShell(float(self.r[peak]), float(gs[peak]), float(self.r[k]), float(n[k]))

    def coordination(
        self, pair: tuple[str, str], r_cut: float | None = None
    ) -> tuple[float, float]:
        """(coordination number, r_cut A): mean number of ``pair[1]`` within r_cut of a ``pair[0]``; r_cut defaults to
        the first shell's minimum (``first_shell``)."""
        if r_cut is None:
            shell = self.first_shell(pair)
            return shell.coordination, shell.r_min
        n = self.running_coordination(pair)
        k = int(np.searchsorted(self.r, r_cut, side="right")) - 1
        return float(n[max(k, 0)]), float(r_cut)


@dataclass(frozen=True)
class FirstShell:
    """The first coordination shell of a pair: peak position r_peak (A) and height g_peak of the smoothed g(r), the first
    minimum after it r_min (A), and the coordination number within r_min."""

    r_peak: float
    g_peak: float
    r_min: float
    coordination: float


def radial_distribution(
    frames: Iterable[Atoms],
    r_max: float = 6.0,
    bins: int = 120,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> RDF:
    """Partial radial distribution functions averaged over periodic ``frames`` (r in A)."""
    edges_r = np.linspace(0.0, r_max, bins + 1)
    r = 0.5 * (edges_r[1:] + edges_r[:-1])
    shell = 4.0 / 3.0 * np.pi * (edges_r[1:] ** 3 - edges_r[:-1] ** 3)
    hist: dict[tuple[str, str], np.ndarray] = {}
    norm: dict[tuple[str, str], float] = {}
    natoms: dict[str, float] = {}
    nf = 0
    for a in frames:
        if not np.all(a.pbc):
            raise MDInputError("radial_distribution needs periodic frames")
        cell = np.array(a.cell)
        pos = wrap(a.positions, cell)
        halo = periodic_halo(pos, cell, r_max)
        allpos = np.concatenate([pos, halo.positions])
        owner = np.concatenate([np.arange(len(a)), halo.owner])
        ei = build_edges(allpos, len(a), r_max)
        d = np.linalg.norm(allpos[ei[1]] - allpos[ei[0]], axis=1)
        zi, zj = a.numbers[ei[0]], a.numbers[owner[ei[1]]]
        vol = a.get_volume()
        present = sorted(set(a.numbers.tolist()))
        want = pairs or [
            (chemical_symbols[x], chemical_symbols[y])
            for i, x in enumerate(present)
            for y in present[i:]
        ]
        for pa, pb in want:
            za, zb = chemical_symbols.index(pa), chemical_symbols.index(pb)
            na, nb = int((a.numbers == za).sum()), int((a.numbers == zb).sum())
            m = (zi == za) & (zj == zb)
            h = np.histogram(d[m], bins=edges_r)[0].astype(float)
            key = (pa, pb)
            hist[key] = hist.get(key, 0) + h
            norm[key] = norm.get(key, 0.0) + na * (nb - (za == zb)) / vol
        for z in present:
            natoms[chemical_symbols[z]] = natoms.get(chemical_symbols[z], 0.0) + float(
                (a.numbers == z).sum()
            )
        nf += 1
    if nf == 0:
        raise MDInputError("radial_distribution: no frames")
    g = {k: hist[k] / np.maximum(norm[k], 1e-300) / shell for k in hist}
    return RDF(
        r, g, {k: np.cumsum(hist[k]) / nf for k in hist}, {k: v / nf for k, v in natoms.items()}, nf
    )


def plot_rdf(rdf: RDF, path: str | Path, title: str = "") -> Path:
    """Write a PNG with one panel per element pair (g(r) and running coordination number)."""
    import matplotlib  # lazy: matplotlib only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when plotting

    keys = list(rdf.g)
    cols = min(3, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, k in zip(axes.flat, keys):
        ax.plot(rdf.r, rdf.g[k], color="C0")
        ax.set_title(f"{k[0]}-{k[1]}")
        ax.set_xlabel("r (A)")
        ax.set_ylabel("g(r)")
        ax2 = ax.twinx()
        ax2.plot(rdf.r, rdf.running_coordination(k), color="C1", lw=0.8)
        ax2.set_ylabel("N(r)", color="C1")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
