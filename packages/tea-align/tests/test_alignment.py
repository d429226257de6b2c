"""TEA on data with a known answer: the fit recovers scale and offsets, aligned energies agree."""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tea_align
from tea_align import synthetic
from tea_align.alignment import Alignment, collect_anchors, fit_alignment
from tea_align.readers import InputSpec, read_frames
from tea_testutil import specs


def test_morse_forces_are_minus_energy_gradient(rng):
    at = synthetic.crystals(rng, 3)[2]
    _, f = synthetic.morse(at)
    h = 1e-5
    for i, k in [(0, 0), (1, 2), (4, 1)]:
        p = at.positions.copy()
        p[i, k] += h
        ep = synthetic.morse(at.__class__(at.numbers, p, cell=at.cell, pbc=True))[0]
        p[i, k] -= 2 * h
        em = synthetic.morse(at.__class__(at.numbers, p, cell=at.cell, pbc=True))[0]
        assert f[i, k] == pytest.approx(-(ep - em) / (2 * h), abs=1e-6)


def test_fit_recovers_scale_and_offsets(demo_data):
    paths, truth = demo_data
    al = tea_align.fit([paths["anchors"]], target_level=synthetic.LEVEL_T)
    ls = al.levels[synthetic.LEVEL_S]
    assert ls.scale == pytest.approx(truth.alpha, rel=1e-6)
    for sym, off in truth.offsets.items():
        assert ls.inner_core_offsets[sym] == pytest.approx(off, rel=1e-6)
        assert ls.shifts[sym] == pytest.approx(
            truth.eps_t[sym] - truth.alpha * truth.eps_s[sym], rel=1e-6
        )
    assert ls.anchor_rmse_aligned < 1e-8
    assert ls.anchor_rmse_icea > 1e-3  # ICEA alone leaves the atomization-energy mismatch


def test_joint_fit_without_isolated_atoms(demo_data):
    """No isolated-atom energies: scale and per-element shifts come from the anchors alone."""
    paths, truth = demo_data
    frames = [f for f in read_frames(paths["anchors"], mixed_levels=True) if f.n_atoms > 1]
    al = fit_alignment(frames, synthetic.LEVEL_T)
    ls = al.levels[synthetic.LEVEL_S]
    assert ls.scale == pytest.approx(truth.alpha, rel=1e-6)
    for sym in ("H", "C", "O", "Si", "Ca"):
        assert ls.shifts[sym] == pytest.approx(
            truth.eps_t[sym] - truth.alpha * truth.eps_s[sym], rel=1e-6
        )
    assert ls.inner_core_offsets == {}


def test_aligned_energies_and_forces_agree_across_sources(demo_data, rng):
    paths, truth = demo_data
    al = tea_align.fit([paths["anchors"]], target_level=synthetic.LEVEL_T)
    # fresh structures, labelled at both levels, never seen by the fit
    structs = synthetic.crystals(rng, 4) + synthetic.molecules(rng, 4)
    s = [synthetic.label(a, synthetic.LEVEL_S) for a in structs]
    t = [synthetic.label(a, synthetic.LEVEL_T) for a in structs]
    from tea_align.frame import SourceInfo, batch_from_frames

    src = SourceInfo("s", "mem", "ase", synthetic.LEVEL_S)
    frames = [
        tea_align.Frame(
            a.numbers,
            a.positions,
            a.cell,
            a.pbc,
            a.get_potential_energy(),
            a.get_forces(),
            None,
            "s",
            synthetic.LEVEL_S,
            str(k),
            k,
        )
        for k, a in enumerate(s)
    ]
    aligned = al.apply(batch_from_frames(frames, [src]))
    et = np.array([a.get_potential_energy() for a in t])
    np.testing.assert_allclose(aligned.energy, et, rtol=1e-12, atol=1e-7)
    np.testing.assert_allclose(
        aligned.forces, np.concatenate([a.get_forces() for a in t]), atol=1e-10
    )
    np.testing.assert_array_equal(aligned.energy_raw, [a.get_potential_energy() for a in s])


def test_fit_with_data_statistics_and_reference_energies(demo_data):
    paths, _ = demo_data
    al = tea_align.fit([paths["anchors"]], specs(paths), target_level=synthetic.LEVEL_T)
    st = al.statistics
    assert st["frames"] == 34
    # raw energies of the two levels differ by the core references: alignment removes it
    assert st["rmse_before"] > 100 * st["rmse_after"]
    for name in ("periodic", "molecules"):
        assert st["sources"][name]["rmse_after"] < st["sources"][name]["rmse_before"] / 100
    assert set(al.reference_energies) == {"H", "C", "O", "Si", "Ca"}
    # the reference energies are the least-squares per-element energies of the aligned frames (eV/atom): numpy's
    # lstsq on the composition fractions and the aligned energies per atom, computed here from the frames themselves
    with tempfile.TemporaryDirectory() as d:
        tea_align.apply(al, specs(paths), Path(d) / "a.h5")
        with tea_align.open_dataset(Path(d) / "a.h5") as ds:
            frames = list(ds)
    syms = sorted(al.reference_energies)
    x = np.array([[f.symbols.count(e) / f.n_atoms for e in syms] for f in frames])
    y = np.array([f.energy / f.n_atoms for f in frames])
    w = np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose([al.reference_energies[e] for e in syms], w, rtol=1e-9, atol=1e-9)
    # round trip through JSON keeps everything
    assert Alignment.from_json(al.to_json()) == al


def test_unknown_level_and_missing_element_are_errors(demo_data):
    paths, _ = demo_data
    al = tea_align.fit([paths["anchors"]], target_level=synthetic.LEVEL_T)
    with pytest.raises(tea_align.TeaAlignError, match="not in the alignment"):
        tea_align.apply(
            al, [f"{paths['periodic']},level=HF/STO-3G"], paths["anchors"].parent / "x.h5"
        )
    assert not (paths["anchors"].parent / "x.h5").exists()
    # an element without anchors or atom energies cannot be aligned
    pairs, atoms = collect_anchors(
        read_frames(paths["anchors"], mixed_levels=True), synthetic.LEVEL_T
    )
    assert len(pairs) == 10 and set(atoms[synthetic.LEVEL_S]) == {"H", "C", "O", "Si", "Ca"}
    # an alignment without a shift for Ca refuses the first periodic frame holding Ca, naming the element, the level,
    # the file and the frame, and writes nothing
    ls = al.levels[synthetic.LEVEL_S]
    no_ca = dataclasses.replace(
        al,
        levels={
            synthetic.LEVEL_S: dataclasses.replace(
                ls, shifts={k: v for k, v in ls.shifts.items() if k != "Ca"}
            )
        },
    )
    first_ca = next(
        f
        for f in read_frames(InputSpec(paths["periodic"], level=synthetic.LEVEL_S))
        if "Ca" in f.symbols
    )
    out = paths["anchors"].parent / "no-ca.h5"
    with pytest.raises(
        tea_align.TeaAlignError,
        match=re.escape(f"element Ca has no alignment shift for level {synthetic.LEVEL_S!r}"),
    ) as exc:
        tea_align.apply(no_ca, [f"{paths['periodic']},level={synthetic.LEVEL_S}"], out)
    assert str(paths["periodic"]) in str(exc.value) and f"frame {first_ca.index}" in str(exc.value)
    assert not out.exists()


def test_rank_deficient_anchors_are_refused(demo_data):
    """Only water anchors cannot separate H and O shifts from the scale."""
    paths, _ = demo_data
    frames = [
        f
        for f in read_frames(paths["anchors"], mixed_levels=True)
        if f.n_atoms > 1 and set(f.symbols) == {"H", "O"}
    ]
    with pytest.raises(tea_align.TeaAlignError, match="do not determine"):
        fit_alignment(frames, synthetic.LEVEL_T)


def _fd_stress(atoms, level: str, h: float = 1e-5) -> np.ndarray:
    """Stress (eV/A^3, ASE sign) of a synthetic level by central finite differences of its energy under strain: an oracle
    that shares no code with tea-align's apply (sigma_ab = (1/V) dE/d eps_ab, symmetric strain)."""
    out = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = []
            for sgn in (1, -1):
                eps = np.eye(3)
                eps[a, b] += sgn * h / 2
                eps[b, a] += sgn * h / 2
                x = atoms.copy()
                x.set_cell(atoms.cell @ eps, scale_atoms=True)
                e.append(synthetic.label(x, level).get_potential_energy())
            out[a, b] = (e[0] - e[1]) / (2 * h) / atoms.get_volume()
    return out


def test_aligned_stress_is_the_target_levels_stress(demo_data, rng):
    """Stress moves onto the target level with the scale alpha (the per-element constants do not depend on strain): the
    aligned source stress equals the target level's own stress, both from finite differences of the energies."""
    paths, truth = demo_data
    al = tea_align.fit([paths["anchors"]], target_level=synthetic.LEVEL_T)
    from tea_align.frame import SourceInfo, batch_from_frames

    structs = synthetic.crystals(rng, 3)
    src = SourceInfo("s", "mem", "ase", synthetic.LEVEL_S)
    frames, target = [], []
    for k, a in enumerate(structs):
        s = synthetic.label(a, synthetic.LEVEL_S)
        frames.append(
            tea_align.Frame(
                a.numbers,
                a.positions,
                a.cell,
                a.pbc,
                s.get_potential_energy(),
                s.get_forces(),
                _fd_stress(a, synthetic.LEVEL_S),
                "s",
                synthetic.LEVEL_S,
                str(k),
                k,
            )
        )
        target.append(_fd_stress(a, synthetic.LEVEL_T))
    aligned = al.apply(batch_from_frames(frames, [src]))
    scale = np.abs(np.array(target)).max()
    assert scale > 1e-3  # strained crystals: the stress is not ~0
    np.testing.assert_allclose(aligned.stress, np.array(target), atol=1e-7 * scale / 1e-3)
    assert not np.allclose(
        np.array([f.stress for f in frames]), np.array(target), atol=1e-3 * scale
    )  # alpha != 1 matters


def test_aligned_stress_scales_as_the_forces_do(demo_data):
    """A second oracle for the stress: forces and stress are both derivatives of the same energy (1), so alignment must
    scale them by the same alpha_s frame by frame: the aligned / raw ratio of the stress equals that of the forces."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    p, _ = demo_data
    data = [
        f"{p['periodic']},level={synthetic.LEVEL_S}",
        f"{p['molecules']},level={synthetic.LEVEL_T}",
    ]
    al = tea_align.fit([p["anchors"]], data, target_level=synthetic.LEVEL_T)
    frames = [
        synthetic.label(c, synthetic.LEVEL_S)
        for c in synthetic.crystals(np.random.default_rng(3), 3)
    ]
    for k, a in enumerate(
        frames
    ):  # give each periodic frame a stress (the synthetic labels have none)
        s = np.array([0.01, -0.02, 0.015, 0.001, -0.002, 0.003]) * (k + 1)
        a.calc = SinglePointCalculator(
            a, energy=a.get_potential_energy(), forces=a.get_forces(), stress=s
        )
    tmp = Path(p["periodic"]).with_name("with-stress.extxyz")
    ase.io.write(tmp, frames)
    out = Path(p["periodic"]).with_name("with-stress.h5")
    tea_align.apply(al, [f"{tmp},level={synthetic.LEVEL_S}"], out)
    with tea_align.open_dataset(out) as ds:
        for a, fr in zip(frames, ds, strict=True):
            f_ratio = np.linalg.norm(fr.forces) / np.linalg.norm(a.get_forces())
            s_ratio = np.linalg.norm(fr.stress) / np.linalg.norm(a.get_stress(voigt=False))
            assert s_ratio == pytest.approx(f_ratio, rel=1e-6)  # extxyz text: forces to ~1e-9
            assert f_ratio == pytest.approx(al.levels[synthetic.LEVEL_S].scale, rel=1e-6)
