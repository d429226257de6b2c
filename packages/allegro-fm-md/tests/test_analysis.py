"""g(r) and coordination numbers: equal to ASE's get_rdf; rocksalt counts; any cell; the rdf command."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from allegro_fm_md.analysis import radial_distribution, read_frames
from allegro_fm_md.cli import main
from ase.build import bulk
from ase.geometry.rdf import get_rdf


def _cao(rattle=0.1, seed=1):
    a = bulk("CaO", "rocksalt", a=4.81, cubic=True) * (3, 3, 3)
    a.rattle(rattle, seed=seed)
    return a


def test_partial_rdf_equals_ase():
    frames = [_cao(seed=s) for s in (1, 2)]
    r = radial_distribution(frames, r_max=6.0, bins=60)
    for z, pair in (((20, 8), ("O", "Ca")), ((8, 8), ("O", "O")), ((20, 20), ("Ca", "Ca"))):
        ref = np.mean([get_rdf(f, 6.0, 60, elements=z)[0] for f in frames], axis=0)
        if z[0] == z[1]:  # ASE normalises like pairs by N^2, we by N (N - 1) (g -> 1 at large r)
            ref *= 108 / 107
        np.testing.assert_allclose(r[pair], ref, atol=1e-10)


def test_rocksalt_coordination_numbers():
    r = radial_distribution([_cao(0.05)], r_max=6.0, bins=120)
    cn, rc = r.coordination(("Ca", "O"))
    assert cn == pytest.approx(6.0) and 2.4 < rc < 3.4  # first shell at a/2 = 2.405 A
    assert r.coordination(("O", "Ca"))[0] == pytest.approx(6.0)
    assert r.coordination(("O", "O"))[0] == pytest.approx(
        12.0
    )  # same-type shell at a/sqrt2 = 3.40 A
    assert r.coordination(("Ca", "O"), r_cut=4.5)[0] == pytest.approx(
        6.0 + 8.0
    )  # + third shell at 4.17 A


def test_small_triclinic_cell_beyond_half_box():
    """r_max larger than half the box (ASE refuses): the halo adds as many images as needed."""
    a = bulk("Cu", "fcc", a=3.6) * (1, 1, 2)  # primitive triclinic cell, 2 atoms
    a.rattle(0.05, seed=3)  # generic distances: none on a bin edge
    big = a * (4, 4, 4)
    r_small = radial_distribution([a], r_max=5.0, bins=50)
    r_big = radial_distribution([big], r_max=5.0, bins=50)
    np.testing.assert_allclose(
        r_small.running_coordination(("Cu", "Cu")),
        r_big.running_coordination(("Cu", "Cu")),
        atol=1e-12,
    )
    assert r_small.coordination(("Cu", "Cu"))[0] == pytest.approx(12.0)


def test_rdf_command(tmp_path, capsys):
    ase.io.write(tmp_path / "t.extxyz", [_cao(seed=s) for s in range(3)])
    assert (
        main(["rdf", str(tmp_path / "t.extxyz"), "-o", str(tmp_path / "gr.png"), "--r-max", "5"])
        == 0
    )
    assert (tmp_path / "gr.png").stat().st_size > 10_000
    table = (tmp_path / "gr.md").read_text()
    assert "| Ca-O |" in table and "| O-Ca |" in table
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    assert main(["rdf", str(tmp_path / "bad.h5")]) == 2
    assert "not a readable H5MD trajectory" in capsys.readouterr().err
    with pytest.raises(ValueError, match="periodic"):
        radial_distribution([ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 1]])])
    assert len(read_frames(tmp_path / "t.extxyz")) == 3


def test_first_shell_of_an_analytic_g_whose_second_peak_is_higher():
    """The issue's Si-Ca case: a first peak at 2.3 A lower than a second at 3.7 A, a minimum at ~3.0 A between them.
    The first shell's peak is the first peak (not the global maximum) and its minimum lies after it; the coordination
    number equals the analytic integral rho * int_0^r_min 4 pi r^2 g dr."""
    from allegro_fm_md.analysis import RDF

    r = np.linspace(0.025, 6.0, 240)
    g = (
        2.5 * np.exp(-(((r - 2.3) / 0.15) ** 2))
        + 4.0 * np.exp(-(((r - 3.7) / 0.2) ** 2))
        + (r > 4.5) * 1.0
    )
    rho = 0.05  # partners per A^3
    dr = r[1] - r[0]
    counts = np.cumsum(rho * 4 * np.pi * r**2 * g * dr)  # pairs per central atom (atoms = 1)
    rdf = RDF(r, {("Si", "Ca"): g}, {("Si", "Ca"): counts}, {"Si": 1.0, "Ca": 1.0}, 1)
    sh = rdf.first_shell(("Si", "Ca"))
    assert sh.r_peak == pytest.approx(2.3, abs=dr)
    assert sh.r_peak < sh.r_min < 3.7 and sh.r_min == pytest.approx(3.0, abs=0.3)
    k = int(np.argmin(np.abs(r - sh.r_min)))
    assert sh.coordination == pytest.approx(counts[k], rel=1e-12)
    first_shell_only = (
        rho * 4 * np.pi * 2.3**2 * 2.5 * 0.15 * np.sqrt(np.pi)
    )  # the Gaussian's integral, narrow peak
    assert sh.coordination == pytest.approx(first_shell_only, rel=0.05)
    assert rdf.coordination(("Si", "Ca")) == (sh.coordination, sh.r_min)


def test_rdf_table_reads_peak_and_minimum_off_the_same_curve(tmp_path):
    ase.io.write(tmp_path / "t.extxyz", [_cao(seed=s) for s in range(3)])
    assert (
        main(["rdf", str(tmp_path / "t.extxyz"), "-o", str(tmp_path / "gr.png"), "--r-max", "6"])
        == 0
    )
    rows = [line.split("|")[1:-1] for line in (tmp_path / "gr.md").read_text().splitlines()[2:]]
    assert rows
    for pair, peak, _, rcut, *_ in rows:
        assert float(peak) < float(rcut), pair  # the first peak lies before the first minimum


def test_first_shell_survives_bin_noise():
    """Statistical noise (alternating +-0.05 on every bin) makes the raw curve turn at once after the peak; the
    smoothed curve still finds the true first minimum (~3.0 A) and the full shell count."""
    from allegro_fm_md.analysis import RDF

    r = np.linspace(0.025, 6.0, 240)
    g = 2.5 * np.exp(-(((r - 2.3) / 0.15) ** 2)) + 4.0 * np.exp(-(((r - 3.7) / 0.2) ** 2))
    noisy = g + 0.05 * (-1.0) ** np.arange(len(r)) * (g > 0.05)
    counts = np.cumsum(0.05 * 4 * np.pi * r**2 * noisy * (r[1] - r[0]))
    sh = RDF(
        r, {("Si", "Ca"): noisy}, {("Si", "Ca"): counts}, {"Si": 1.0, "Ca": 1.0}, 1
    ).first_shell(("Si", "Ca"))
    assert sh.r_min == pytest.approx(3.0, abs=0.3) and sh.r_peak == pytest.approx(2.3, abs=0.06)


def test_an_o_h_like_shell_with_random_noise_counts_its_partners():
    """A second noisy oracle: a narrow first peak (1.0 A, like O-H) then a second at 1.8 A, on 0.01 A bins with seeded
    Gaussian noise (2.0) where g > 1, which puts false minima on the raw peak: the shell's minimum lies between the peaks and it counts the first
    peak's partners (the analytic integral, within 5 %)."""
    from allegro_fm_md.analysis import RDF

    r = np.arange(0.005, 3.0, 0.01)
    g = 30.0 * np.exp(-(((r - 1.0) / 0.05) ** 2)) + 6.0 * np.exp(-(((r - 1.8) / 0.1) ** 2))
    noisy = g + np.random.default_rng(7).normal(0, 2.0, len(r)) * (
        g > 1.0
    )  # counting noise, largest where g is
    rho = 0.03
    counts = np.cumsum(rho * 4 * np.pi * r**2 * noisy * 0.01)
    sh = RDF(r, {("O", "H"): noisy}, {("O", "H"): counts}, {"O": 1.0, "H": 1.0}, 1).first_shell(
        ("O", "H")
    )
    assert 1.15 < sh.r_min < 1.6 and sh.r_peak == pytest.approx(1.0, abs=0.02)
    assert sh.coordination == pytest.approx(
        rho * 4 * np.pi * 30.0 * 0.05 * np.sqrt(np.pi) * (1.0 + 0.05**2 / 2), rel=0.05
    )


def test_a_zero_kelvin_spike_peaks_at_its_own_bin_on_fine_bins():
    """A perfect crystal's first shell is one bin; the moving average spreads it into a plateau (9 bins at 0.0125 A),
    whose middle, not its end, is the peak."""
    from allegro_fm_md.analysis import RDF

    r = np.arange(0.00625, 6.0, 0.0125)
    g = np.zeros_like(r)
    g[300] = 400.0  # r = 3.756 A
    sh = RDF(r, {("Ar", "Ar"): g}, {("Ar", "Ar"): np.cumsum(g) * 0.01}, {"Ar": 1.0}, 1).first_shell(
        ("Ar", "Ar")
    )
    assert sh.r_peak == pytest.approx(r[300], abs=1e-12) and sh.r_min > r[300]
