"""Force errors of peer potentials that ship their weights (SevenNet-0, CHGNet) on the frames of an aligned dataset,
grouped like ``allegro-fm evaluate --by key`` (per structure family), for the model card's comparison.

Only forces are compared: a peer's energy zero (MPtrj's corrected energies, its own reference states) is not the
dataset's, and forces do not depend on it. Frames of elements a peer does not know are skipped and counted.
"""

from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np
import tea_align
from ase import Atoms
from tea_align.progress import progress as tracked

from ..labelling import pbe_calculator

PEERS = ("sevenn-0", "chgnet")


def peer_calculator(name: str, device: str = "cpu"):
    """An ASE calculator of a peer that ships its weights in its wheel: "sevenn-0" (SevenNet-0) or "chgnet" (CHGNet)."""
    if name == "sevenn-0":
        return pbe_calculator(device)
    if name == "chgnet":
        from chgnet.model.dynamics import CHGNetCalculator  # lazy: optional [datagen] extra

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return CHGNetCalculator(use_device=device)
    raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")


def force_errors(
    calc, dataset: str, by: str = "key", periodic_only: bool = True, progress: bool = True
) -> dict:
    """{group: {"frames", "force_rmse_meV_A", "force_cosine"}} of ``calc`` (an ASE calculator) on the frames of the
    aligned ``dataset`` (grouped by frame "key" or "source"; "all" pools them); ``periodic_only`` skips frames that are
    not periodic along all three axes (peers trained on MPtrj know crystals, not molecules in vacuum)."""
    acc: dict[str, list[float]] = defaultdict(
        lambda: [0, 0.0, 0, 0.0, 0.0, 0.0]
    )  # frames, se, n, dot, |a|^2, |b|^2
    skipped = 0
    with tea_align.open_dataset(dataset) as ds:
        for i in tracked(range(len(ds)), desc="peer forces", enabled=progress, leave=False):
            fr = ds[i]
            if fr.forces is None or (periodic_only and not np.all(fr.pbc)):
                skipped += 1
                continue
            a = Atoms(numbers=fr.numbers, positions=fr.positions, cell=fr.cell, pbc=fr.pbc)
            a.calc = calc
            try:
                f = np.asarray(a.get_forces(), dtype=np.float64)
            except (
                KeyError,
                ValueError,
                RuntimeError,
            ):  # an element or a geometry the peer cannot take
                skipped += 1
                continue
            d = 1000.0 * (f - fr.forces)
            for g in ("all", fr.key or "(no key)" if by == "key" else fr.source):
                s = acc[g]
                s[0] += 1
                s[1] += float((d * d).sum())
                s[2] += d.size
                s[3] += float((f * fr.forces).sum())
                s[4] += float((f * f).sum())
                s[5] += float((fr.forces * fr.forces).sum())
    out = {
        g: {
            "frames": s[0],
            "force_rmse_meV_A": float(np.sqrt(s[1] / s[2])),
            "force_cosine": float(s[3] / np.sqrt(s[4] * s[5])) if s[4] > 0 and s[5] > 0 else None,
        }
        for g, s in acc.items()
        if s[2]
    }
    out["skipped_frames"] = skipped
    return out


def markdown(results: dict[str, dict]) -> str:
    """One table: a row per group, force RMSE (meV/A) and cosine per peer."""
    peers = list(results)
    groups = sorted(
        {g for r in results.values() for g in r if g != "skipped_frames"},
        key=lambda g: (g != "all", g),
    )
    lines = [
        "| group | " + " | ".join(f"{p} force RMSE (meV/A) | {p} cosine" for p in peers) + " |",
        "|---|" + "---|---|" * len(peers),
    ]
    for g in groups:
        cells = []
        for p in peers:
            r = results[p].get(g)
            cells += (
                ["-", "-"]
                if r is None
                else [
                    f"{r['force_rmse_meV_A']:.1f}",
                    "-" if r["force_cosine"] is None else f"{r['force_cosine']:.3f}",
                ]
            )
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
