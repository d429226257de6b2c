"""The reference pair potentials: forces = -grad E, virial = strain derivative, local/ghost split."""

from __future__ import annotations

import numpy as np
import pytest
from allegro_fm_md.neighbor import build_edges
from allegro_fm_md.reference import LennardJones, Morse


def _periodic(pot, pos, cell):
    """Whole-system call with explicit periodic images as ghosts (what the engine does on one rank)."""
    shifts = np.array(
        [
            [i, j, k]
            for i in (-1, 0, 1)
            for j in (-1, 0, 1)
            for k in (-1, 0, 1)
            if (i, j, k) != (0, 0, 0)
        ]
    )
    ghosts = np.concatenate([pos + s @ cell for s in shifts])
    allpos = np.concatenate([pos, ghosts])
    ei = build_edges(allpos, len(pos), pot.cutoff)
    r = pot.compute(allpos, np.zeros(len(allpos), int), ei, len(pos))
    f = r.forces[: len(pos)].copy()
    np.add.at(f, np.tile(np.arange(len(pos)), len(shifts)), r.forces[len(pos) :])
    return r.energy, f, r.virial


@pytest.mark.parametrize("pot", [LennardJones(["Ar"], cutoff=6.0), Morse(["Cu"], cutoff=5.0)])
def test_forces_and_virial_are_derivatives(pot):
    rng = np.random.default_rng(1)
    cell = np.array([[10.5, 0, 0], [1.0, 10.0, 0], [0.5, -0.7, 9.5]])
    pos = (
        np.stack(np.meshgrid(*[np.arange(3)] * 3), -1).reshape(-1, 3) / 3.0
        + rng.random((27, 3)) * 0.05
    ) @ cell
    e, f, w = _periodic(pot, pos, cell)
    h = 1e-6
    for a, d in [(0, 0), (5, 1), (13, 2)]:
        p = pos.copy()
        p[a, d] += h
        ep = _periodic(pot, p, cell)[0]
        p[a, d] -= 2 * h
        em = _periodic(pot, p, cell)[0]
        assert f[a, d] == pytest.approx(-(ep - em) / (2 * h), abs=1e-6)
    for a, b in [(0, 0), (1, 2), (2, 2)]:
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h / (2 if a != b else 1)
        es = [
            _periodic(pot, pos @ (np.eye(3) + s * eps), cell @ (np.eye(3) + s * eps))[0]
            for s in (1, -1)
        ]
        assert -w[a, b] == pytest.approx((es[0] - es[1]) / (2 * h), abs=1e-6)  # W = -dE/d(strain)
