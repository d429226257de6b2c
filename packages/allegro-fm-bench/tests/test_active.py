"""Active-learning rounds: the configurations a model reaches in the bench's EOS relaxations, as labelling jobs (ASE's
EMT stands in for the model: the selection logic is what is tested, not a model)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT


def test_relaxation_snapshots_span_the_path_and_keep_unconverged_ones():
    from allegro_fm_bench.active import relaxation_snapshots

    a = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 2, 2)
    a.rattle(0.08, seed=1)
    start = a.positions.copy()
    snaps, end, ok = relaxation_snapshots(a, EMT(), fmax=0.01, steps=300, keep=5)
    assert ok and len(snaps) == 5
    np.testing.assert_allclose(snaps[0].positions, start)  # the path's start ...
    np.testing.assert_allclose(snaps[-1].positions, end.positions)  # ... and its end
    e = EMT()
    energies = []
    for s in snaps:
        s.calc = e
        energies.append(s.get_potential_energy())
    assert energies[-1] < energies[0] - 0.05  # downhill along the path (eV)
    end.calc = EMT()
    assert np.abs(end.get_forces()).max() < 0.01
    np.testing.assert_allclose(a.positions, start)  # the input is not moved
    # three steps cannot reach 1e-4 eV/A: not an error here, the partial path is returned
    snaps, end, ok = relaxation_snapshots(a, EMT(), fmax=1e-4, steps=3, keep=6)
    assert not ok and 2 <= len(snaps) <= 4
    # with the cell: zero pressure reached from a strained cell (EMT's Cu: a = 3.59 A)
    snaps, end, ok = relaxation_snapshots(bulk("Cu", "fcc", a=3.75, cubic=True), EMT(), fmax=0.005, steps=200, cell=True)
    assert ok and end.cell[0, 0] == pytest.approx(3.59, abs=0.02) and snaps[0].cell[0, 0] == pytest.approx(3.75)


def test_eos_path_jobs_cover_every_volume_and_rattle_the_ends():
    from allegro_fm_bench.active import EOS_STRAINS, eos_path_jobs
    from allegro_fm_bench.minidata import MiniDataSettings

    st = MiniDataSettings()
    jobs = eos_path_jobs(EMT(), "emt", st, np.random.default_rng(0), lambda: bulk("Cu", "fcc", a=3.7, cubic=True), "Cu")
    gens = [g for _, _, g in jobs]
    assert all(n == "Cu" for n, _, _ in jobs)
    for s in EOS_STRAINS:
        assert any(f"EOS at V0 (1 {s:+.2f})" in g for g in gens)
    ends = [a for _, a, g in jobs if " end rattle" in g]
    assert len(ends) == 2 + len(EOS_STRAINS)  # every relaxation's end, rattled by the first rattle
    v0 = next(a for _, a, g in jobs if "positions + cell" in g and "end" in g).get_volume()
    vols = sorted({round(a.get_volume() / v0 - 1, 3) for _, a, g in jobs if "EOS" in g})
    assert vols == pytest.approx(sorted(EOS_STRAINS), abs=1e-3)


def test_active_data_command_refuses_rounds_1_and_2_and_a_missing_model(tmp_path, capsys):
    from allegro_fm_bench.cli import main

    assert main(["make-active-data", str(tmp_path / "none.ckpt"), "--round", "2", "-o", str(tmp_path / "d")]) == 2
    assert "rounds 1 and 2 are make-mini-data's" in capsys.readouterr().err
    assert main(["make-active-data", str(tmp_path / "none.ckpt"), "--round", "3", "-o", str(tmp_path / "d")]) == 2
    assert "none.ckpt: no such model file" in capsys.readouterr().err
