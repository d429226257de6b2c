"""Counter-based noise (noise.py): standard normal, uncorrelated across atoms, components, steps and streams, and a
function of (seed, stream, step, atom id) only: any order or subset of atoms gets the same numbers."""

from __future__ import annotations

import numpy as np
from allegro_fm_md.noise import BAROSTAT, LANGEVIN, standard_normal, uniform
from scipy import stats


def test_numbers_depend_on_the_atom_id_only():
    ids = np.arange(1000)
    z = standard_normal(7, LANGEVIN, 42, ids)
    perm = np.random.default_rng(0).permutation(1000)
    np.testing.assert_array_equal(
        standard_normal(7, LANGEVIN, 42, ids[perm]), z[perm]
    )  # any order, any rank's subset
    np.testing.assert_array_equal(standard_normal(7, LANGEVIN, 42, ids[17:18]), z[17:18])
    assert not np.array_equal(standard_normal(8, LANGEVIN, 42, ids), z)  # another seed
    assert not np.array_equal(standard_normal(7, BAROSTAT, 42, ids), z)  # another stream


def test_standard_normal_and_uncorrelated():
    z = np.stack(
        [standard_normal(3, LANGEVIN, step, np.arange(2000)) for step in range(100)]
    )  # (steps, atoms, 3)
    flat = z.ravel()
    assert abs(flat.mean()) < 4 / np.sqrt(flat.size) and abs(flat.var() - 1) < 4 * np.sqrt(
        2 / flat.size
    )
    assert stats.kstest(flat[:100_000], "norm").pvalue > 1e-3
    for a, b in (
        (z[1:], z[:-1]),
        (z[:, 1:], z[:, :-1]),
        (z[..., 1:], z[..., :-1]),
    ):  # steps, atoms, components
        r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert abs(r) < 4 / np.sqrt(a.size), r
    u = uniform(3, LANGEVIN, 0, np.arange(200_000))
    assert u.min() > 0 and u.max() <= 1 and stats.kstest(u, "uniform").pvalue > 1e-3
