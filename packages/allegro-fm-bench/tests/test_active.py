"""Active-learning rounds: the configurations a model reaches in the bench's EOS relaxations, as labelling jobs (ASE's
EMT stands in for the model: the selection logic is what is tested, not a model)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT


def test_relaxation_snapshots_span_the_path_and_keep_unconverged_ones():
    from allegro_fm_bench.mini.active import relaxation_snapshots

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
    snaps, end, ok = relaxation_snapshots(
        bulk("Cu", "fcc", a=3.75, cubic=True), EMT(), fmax=0.005, steps=200, cell=True
    )
    assert (
        ok
        and end.cell[0, 0] == pytest.approx(3.59, abs=0.02)
        and snaps[0].cell[0, 0] == pytest.approx(3.75)
    )


def test_eos_path_jobs_cover_every_volume_and_rattle_the_ends():
    from allegro_fm_bench.mini.active import EOS_STRAINS, eos_path_jobs
    from allegro_fm_bench.mini.minidata import MiniDataSettings

    st = MiniDataSettings()
    jobs = eos_path_jobs(
        EMT(),
        "emt",
        st,
        np.random.default_rng(0),
        lambda: bulk("Cu", "fcc", a=3.7, cubic=True),
        "Cu",
    )
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

    assert (
        main(
            [
                "make-active-data",
                str(tmp_path / "none.ckpt"),
                "--round",
                "2",
                "-o",
                str(tmp_path / "d"),
            ]
        )
        == 2
    )
    assert "rounds 1 and 2 are make-mini-data's" in capsys.readouterr().err
    assert (
        main(
            [
                "make-active-data",
                str(tmp_path / "none.ckpt"),
                "--round",
                "3",
                "-o",
                str(tmp_path / "d"),
            ]
        )
        == 2
    )
    assert "none.ckpt: no such model file" in capsys.readouterr().err
    model = tmp_path / "m.ckpt"
    model.write_bytes(b"")
    assert (
        main(
            [
                "make-active-data",
                str(model),
                "--round",
                "5",
                "--reaction-path",
                str(tmp_path),
                "-o",
                str(tmp_path / "d"),
            ]
        )
        == 2
    )
    assert "no finished reference NEB (saddle.extxyz)" in capsys.readouterr().err
    assert (
        main(
            [
                "make-active-data",
                str(model),
                "--round",
                "4",
                "--band-loop",
                "1",
                "-o",
                str(tmp_path / "d"),
            ]
        )
        == 2
    )
    assert (
        "--band-loop 1: an iteration is 1, 2, ... of an active round 5 or later"
        in capsys.readouterr().err
    )


def test_band_loop_labels_the_band_where_the_optimiser_takes_it(monkeypatch, curved_surface):
    """band_loop_jobs on the analytic curved surface (conftest; the bench's NEB endpoints replaced by its minima
    (+-1, 1, 0)): the first snapshot is the start, on the straight line y = 1 between the minima; the band then moves
    onto the curved path y = x^2 and the last snapshot is the converged band, every image on it; a snapshot is taken
    every ``every`` FIRE steps and none repeats the one before; every job names the iteration and where it was taken."""
    from allegro_fm_bench import neb
    from allegro_fm_bench.mini import active

    monkeypatch.setattr(
        neb,
        "endpoints",
        lambda calc: (Atoms("H", [(-1.0, 1.0, 0.0)]), Atoms("H", [(1.0, 1.0, 0.0)])),
    )
    jobs = active.band_loop_jobs(curved_surface, "surface", 3, every=10)
    inner = neb.N_IMAGES - 2
    assert len(jobs) % inner == 0 and len(jobs) >= 3 * inner
    snaps = [jobs[i : i + inner] for i in range(0, len(jobs), inner)]
    print(
        f"band loop on the analytic surface: {len(snaps)} snapshots: {[s[0][2].split(', ')[1] for s in snaps]}"
    )
    for s in snaps:
        assert all(g.startswith("band loop 3: surface NEB band (in-plane), ") for _, _, g in s)
        assert [g.rsplit(" ", 1)[1] for _, _, g in s] == [
            f"{k}/{neb.N_IMAGES - 1}" for k in range(1, inner + 1)
        ]
    first = np.array([a.positions[0] for _, a, _ in snaps[0]])
    assert "NEB step 0" in snaps[0][0][2]
    np.testing.assert_allclose(first[:, 1], 1.0, atol=1e-9)  # the start: the straight line
    last = np.array([a.positions[0] for _, a, _ in snaps[-1]])
    assert "converged band" in snaps[-1][0][2]
    assert np.abs(last[:, 1] - last[:, 0] ** 2).max() < 0.1  # on the curved path
    steps = [int(g.split("step ")[1].split(",")[0]) for _, _, g in (s[0] for s in snaps[:-1])]
    assert all(k % 10 == 0 for k in steps)
    for a, b in zip(snaps, snaps[1:]):
        assert (
            max(np.abs(x.positions - y.positions).max() for (_, x, _), (_, y, _) in zip(a, b))
            > 1e-6
        )


def test_band_loop_iterations_run_in_order(tmp_path):
    """Iteration 2 of a band loop without iteration 1's labels is refused, naming the missing stage file (nothing is
    labelled, no model is loaded)."""
    from allegro_fm_bench.mini.active import make_active_molecular

    with pytest.raises(
        ValueError, match=r"round5_band_loop\.it1\.extxyz: band loop iteration 1 has no labels"
    ):
        make_active_molecular(tmp_path, tmp_path / "none.ckpt", 5, band_loop=2, md=False)
    assert not any(tmp_path.iterdir())


def test_transition_state_jobs_rattle_the_saddle_and_sample_both_descents(tmp_path):
    """The transition-state region: the saddle as it is and rattled by each of TS_RATTLES (displacements of that
    size, never larger than 4 sigma), every DESCENT_EVERY-th frame of both saved descents in order, with generators
    that say which; the same seed gives the same jobs."""
    import ase.io
    from allegro_fm_bench.mini.active import DESCENT_EVERY, TS_RATTLES, transition_state_jobs
    from allegro_fm_bench.structures import carbonic_acid_path

    band = carbonic_acid_path(5)
    ase.io.write(tmp_path / "images.extxyz", band)
    saddle = band[2]
    ase.io.write(tmp_path / "saddle.extxyz", saddle)
    for side, end in (("reactant", band[1]), ("product", band[3])):  # saved descents: no PySCF call
        path = []
        for k, t in enumerate(np.linspace(0, 1, 7)):
            a = saddle.copy()
            a.positions = (1 - t) * saddle.positions + t * end.positions
            a.info.update({"side": side, "step": k, "connects": True})
            path.append(a)
        ase.io.write(tmp_path / f"descents-{side}.extxyz", path)
    jobs = transition_state_jobs(tmp_path, np.random.default_rng(0))
    rattled = [j for j in jobs if j[2].startswith("reference saddle")]
    assert len(rattled) == len(TS_RATTLES)
    for (_, a, gen), sigma in zip(rattled, TS_RATTLES):
        d = np.linalg.norm(a.positions - saddle.positions, axis=1)
        assert (
            (d.max() < 1e-6) if sigma == 0 else (sigma / 4 < d.max() <= 4 * sigma * np.sqrt(3))
        ), gen
    descents = [j for j in jobs if j[2].startswith("reference descent")]
    steps = [k for k in range(7) if k % DESCENT_EVERY == 0]
    assert [g for _, _, g in descents] == [
        f"reference descent (PBE) to the {s}, step {k}"
        for s in ("reactant", "product")
        for k in steps
    ]
    assert all(n == "CH2O3" for n, _, _ in jobs)
    again = transition_state_jobs(tmp_path, np.random.default_rng(0))
    assert all(
        np.array_equal(a.positions, b.positions) and g == h
        for (_, a, g), (_, b, h) in zip(jobs, again)
    )


class _Exploding(EMT):
    """EMT whose forces turn non-finite after ``n`` calls: a model that breaks during MD."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.n -= 1
        if self.n < 0:
            self.results["forces"] = self.results["forces"] * np.nan


def test_model_md_keeps_evenly_spaced_snapshots_and_stops_where_the_model_breaks():
    from allegro_fm_bench.mini.active import _broken, model_md

    a = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    start = a.positions.copy()
    snaps, stopped = model_md(a, EMT(), 600.0, 2.0, 40, 4, seed=1)
    assert stopped == "" and [k for k, _ in snaps] == [10, 20, 30, 40]
    moved = [np.abs(s.positions - start).max() for _, s in snaps]
    assert moved[0] > 0.01 and all(
        s.calc is None for _, s in snaps
    )  # thermal motion; plain geometries to label
    np.testing.assert_allclose(a.positions, start)  # the input is not moved
    # the model breaks after ~25 force calls: the snapshots before are kept, the run says where it stopped and why
    snaps, stopped = model_md(a, _Exploding(25), 600.0, 2.0, 40, 4, seed=1)
    assert (
        [k for k, _ in snaps] == [10, 20]
        and "before step 30" in stopped
        and "non-finite forces" in stopped
    )
    # atoms on top of each other are a broken frame, named
    d = a.copy()
    d.positions[1] = d.positions[0] + [0.3, 0, 0]
    d.calc = EMT()
    assert "atoms 0 and 1 at 0.30 A" in _broken(d)
    a.calc = EMT()
    assert _broken(a) == ""


def test_round4_molecules_are_new_closed_shell_and_the_held_out_ones_stay_out():
    from allegro_fm_bench.mini.active import ROUND4_MOLECULES, molecular_md_geometries
    from allegro_fm_bench.mini.minidata import (
        HELDOUT_MOLECULES,
        MORE_MOLECULES,
        ROUND2_CLUSTERS,
        ROUND2_MOLECULES,
        MiniDataSettings,
    )
    from allegro_fm_bench.structures import MOLECULES
    from ase.build import molecule

    assert not set(ROUND4_MOLECULES) & set(
        MOLECULES + MORE_MOLECULES + ROUND2_MOLECULES + HELDOUT_MOLECULES
    )
    for name in ROUND4_MOLECULES:
        m = molecule(name)
        assert set(m.get_chemical_symbols()) <= {"H", "C", "O"}
        assert (
            sum(m.numbers) % 2 == 0 and not m.get_initial_magnetic_moments().any()
        )  # closed shell
    # EMT (which has H, C, O parameters) stands in for the model
    g = molecular_md_geometries(
        "emt",
        MiniDataSettings(),
        np.random.default_rng(0),
        calc=EMT(),
        molecules=("H2O", "CO2"),
        n_clusters=(2, 1),
    )
    keys = [a.info["structure"] for a in g]
    assert len(g) == (2 + 2 + 1) * 2  # every start at both temperatures
    assert keys.count("H2O") == 2 and keys.count("CO2") == 2 and keys.count("H2O+H2O+H2O") == 2
    assert set(keys) - {"H2O", "CO2", "H2O+H2O", "H2O+H2O+H2O"} <= {
        "+".join(c) for c in ROUND2_CLUSTERS
    }
    assert not {"CH3OH+H2O", "CH3OH+H2O+H2O"} & set(keys)  # the held-out clusters
    assert all(not a.pbc.any() and "MD T=" in a.info["generator"] for a in g)


def test_model_md_of_a_family_without_round1_data_names_the_missing_file(tmp_path):
    from allegro_fm_bench.mini.active import _round1_base

    with pytest.raises(
        ValueError, match=r"pbe/quartz\.extxyz: no labelled family .*run make-mini-data first"
    ):
        _round1_base(tmp_path, "quartz")
    (tmp_path / "pbe").mkdir()
    (tmp_path / "pbe" / "quartz.extxyz").write_text("not an extxyz file\n")
    with pytest.raises(ValueError, match="quartz.extxyz: no labelled family"):
        _round1_base(tmp_path, "quartz")
