"""Three levels onto one target, with one level's isolated-atom energies given by ``--atom-energies`` (JSON) instead
of frames: each level's planted scale and inner-core offsets come back (1e-6), through the Python API and the CLI;
isolated-atom energies that contradict the anchors are refused."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
import tea_align
from tea_align import synthetic
from tea_align.cli import main

LEVEL_U = "synthetic-U (another PAW set)"
EPS_U = {"H": -0.91, "C": -1.71, "O": -2.02, "Si": -1.05, "Ca": -0.31}
ALPHA_U = 0.9412


def _frames(tmp_path):
    rng = np.random.default_rng(11)
    t = synthetic.Truth()
    u = synthetic.Truth(alpha=ALPHA_U, eps_s=dict(EPS_U))
    structs = synthetic.molecules(rng, 8) + synthetic.crystals(rng, 6)
    anchors = []
    for a in structs:
        anchors.append(synthetic.label(a, synthetic.LEVEL_T, t))
        anchors.append(synthetic.label(a, synthetic.LEVEL_S, t))
        x = synthetic.label(a, synthetic.LEVEL_S, u)  # S's formula with U's numbers
        x.info["level_of_theory"] = LEVEL_U
        anchors.append(x)
    anchors += synthetic.isolated_atoms(synthetic.LEVEL_S, t) + synthetic.isolated_atoms(
        synthetic.LEVEL_T, t
    )
    ase.io.write(tmp_path / "anchors.extxyz", anchors)
    (tmp_path / "atoms.json").write_text(json.dumps({LEVEL_U: EPS_U}))
    return t, u


def _check(al, t, u):
    for level, truth in ((synthetic.LEVEL_S, t), (LEVEL_U, u)):
        ls = al.levels[level]
        assert ls.scale == pytest.approx(truth.alpha, rel=1e-6), level
        for sym, off in truth.offsets.items():
            assert ls.inner_core_offsets[sym] == pytest.approx(off, rel=1e-6), (level, sym)
        assert ls.anchor_rmse_aligned < 1e-8


def test_three_levels_with_atom_energies_from_json(tmp_path, capsys):
    t, u = _frames(tmp_path)
    al = tea_align.fit(
        [tmp_path / "anchors.extxyz"],
        target_level=synthetic.LEVEL_T,
        atom_energies={LEVEL_U: EPS_U},
    )
    _check(al, t, u)
    assert (
        main(
            [
                "fit",
                "--anchors",
                str(tmp_path / "anchors.extxyz"),
                "--anchors-only",
                "--target",
                synthetic.LEVEL_T,
                "--atom-energies",
                str(tmp_path / "atoms.json"),
                "-o",
                str(tmp_path / "al.json"),
                "-q",
            ]
        )
        == 0
    )
    _check(tea_align.Alignment.load(tmp_path / "al.json"), t, u)
    without = tea_align.fit([tmp_path / "anchors.extxyz"], target_level=synthetic.LEVEL_T)
    assert (
        without.levels[LEVEL_U].inner_core_offsets == {}
    )  # no U atoms: the joint fit, no ICEA offsets


def test_atom_energies_contradicting_the_anchors_are_refused(tmp_path, capsys):
    _frames(tmp_path)
    bad = {synthetic.LEVEL_S: {"O": synthetic.EPS_S["O"] + 0.5}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    code = main(
        [
            "fit",
            "--anchors",
            str(tmp_path / "anchors.extxyz"),
            "--anchors-only",
            "--target",
            synthetic.LEVEL_T,
            "--atom-energies",
            str(tmp_path / "bad.json"),
            "-o",
            str(tmp_path / "al.json"),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "isolated-atom energy of O" in err and "anchors say" in err, err
    assert not (tmp_path / "al.json").exists()
