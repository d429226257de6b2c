"""Bad data is never accepted silently: absurd or NaN numbers are refused naming file and frame, wrong units are
warned about with the numbers, command-line forms are explicit, files get the umask's mode, interrupts clean up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from tea_align import synthetic
from tea_align.cli import main
from tea_align.files import write_text_atomic
from tea_align.pipeline import check_energy_scale
from tea_align.readers import InputSpec, read_batches
from tea_testutil import specs

#: Hartree-Fock-limit energies of the free atoms (Hartree): the scale all-electron molecular energies have
HF_ATOM = {"H": -0.5, "C": -37.6886, "O": -74.8094}


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _molecules(path, factor=1.0, n=6):
    """H2O, CO2, CH4 ... with all-electron-sized energies (eV x ``factor``) and small forces (eV/A x ``factor``)."""
    rng = np.random.default_rng(3)
    frames = []
    for k in range(n):
        m = molecule(("H2O", "CO2", "CH4")[k % 3])
        m.rattle(0.02, seed=k)
        e = (sum(HF_ATOM[s] for s in m.get_chemical_symbols()) - 0.3 - 0.01 * k) * units.Hartree
        f = rng.normal(0, 0.3, (len(m), 3))
        m.calc = SinglePointCalculator(m, energy=e * factor, forces=f * factor)
        frames.append(m)
    ase.io.write(path, frames, format="extxyz")
    return path


def test_energy_scale_check_names_the_unit_it_looks_like(tmp_path):
    for factor, expect in (
        (1.0, None),
        (1 / units.Hartree, "Hartree"),
        (units.mol / units.kcal, "kcal/mol"),
        (units.mol / units.kJ, "kJ/mol"),
    ):
        path = _molecules(tmp_path / f"m{factor:.4g}.extxyz", factor)
        batch = next(read_batches(InputSpec.parse(f"{path},level=L")))
        w = check_energy_scale(batch, str(path))
        if expect is None:
            assert w is None, w
        else:
            assert expect in w and "median E/atom" in w, w
    # valence-only periodic energies (PBE/PAW-like, -3..-9 eV/atom) are not flagged
    crystal = Atoms(
        "Ca4Si4O12",
        positions=np.random.default_rng(0).uniform(0, 8, (20, 3)),
        cell=[8, 8, 8],
        pbc=True,
    )
    crystal.calc = SinglePointCalculator(crystal, energy=-7.1 * 20, forces=np.zeros((20, 3)))
    ase.io.write(tmp_path / "pbe.extxyz", crystal)
    assert (
        check_energy_scale(
            next(read_batches(InputSpec.parse(f"{tmp_path / 'pbe.extxyz'},level=P"))), "pbe"
        )
        is None
    )


def test_kcal_per_mol_data_warns_and_says_why_every_frame_was_dropped(tmp_path, capsys, caplog):
    path = _molecules(tmp_path / "kcal.extxyz", units.mol / units.kcal)
    forces_kcal = np.abs(ase.io.read(path, ":")[0].get_forces()).max()
    anchors = _molecules(tmp_path / "anchors.extxyz")
    code, _, err = run(["convert", f"{path},level=L", "-o", str(tmp_path / "c.h5")], capsys)
    assert code == 0 and "kcal/mol read as eV" in caplog.text
    code, _, err = run(
        [
            "apply",
            f"{path},level=L",
            "--alignment",
            str(_identity(tmp_path)),
            "--max-force",
            "1 eV/A",
            "-o",
            str(tmp_path / "a.h5"),
            "-q",
        ],
        capsys,
    )
    assert forces_kcal > 1.0
    assert (
        code == 2
        and "no frames left after preprocessing" in err
        and "max force" in err
        and "another unit" in err
    ), err
    assert not (tmp_path / "a.h5").exists() and anchors.exists()


def _identity(tmp_path):
    d = {"format": "tea-align/alignment", "version": 1, "target_level": "L", "levels": {}}
    return write_text_atomic(tmp_path / "id.json", json.dumps(d))


def test_absurd_energy_and_nan_alignment_are_refused(tmp_path, capsys):
    m = molecule("H2O")
    m.calc = SinglePointCalculator(m, energy=1e308, forces=np.zeros((3, 3)))
    ok = molecule("CO2")
    ok.calc = SinglePointCalculator(ok, energy=-5000.0, forces=np.zeros((3, 3)))
    ase.io.write(tmp_path / "big.extxyz", [ok, m])
    code, _, err = run(
        ["convert", f"{tmp_path / 'big.extxyz'},level=L", "-o", str(tmp_path / "o.h5"), "-q"],
        capsys,
    )
    assert (
        code == 2 and "energy per atom beyond" in err and "frame 1" in err and "big.extxyz" in err
    ), err
    al = json.loads(_identity(tmp_path).read_text())
    al["levels"] = {"S": {"level": "S", "scale": float("nan"), "shifts": {"H": 0.1}}}
    (tmp_path / "nan.json").write_text(json.dumps(al))
    code, _, err = run(
        [
            "apply",
            f"{tmp_path / 'big.extxyz'},level=L",
            "--alignment",
            str(tmp_path / "nan.json"),
            "-o",
            str(tmp_path / "o.h5"),
            "-q",
        ],
        capsys,
    )
    assert code == 2 and "scale = nan is not a finite number" in err and "nan.json" in err, err
    (tmp_path / "latin1.json").write_bytes(
        '{"format": "tea-align/alignment", "x": "\xe9"}'.encode("latin-1")
    )
    code, _, err = run(
        ["report", str(tmp_path / "latin1.json"), "-o", str(tmp_path / "r"), "-q"], capsys
    )
    assert code == 2 and "not UTF-8" in err, err


def test_level_names_with_commas_and_the_level_option(tmp_path, capsys):
    path = _molecules(tmp_path / "mol.extxyz")
    spice_like = "wB97M-D3(BJ)/def2-TZVPPD (Psi4, SPICE/OFF23)"
    spec = InputSpec.parse(f"{path},level={spice_like},name=m")
    assert spec.level == spice_like and spec.name == "m"
    code, out, err = run(["inspect", str(path), "--level", f"mol={spice_like}", "-q"], capsys)
    assert code == 0 and spice_like in out, err
    code, _, err = run(["inspect", str(path), "--level", "nosuch=X", "-q"], capsys)
    assert code == 2 and "no input is named 'nosuch'" in err


def test_anchors_and_fix_scale_are_explicit(demo_data, tmp_path, capsys):
    paths, truth = demo_data
    data = specs(paths)
    # the data written after --anchors would silently become anchors: refused with the fix
    code, _, err = run(
        [
            "fit",
            "--anchors",
            str(paths["anchors"]),
            *data,
            "--target",
            synthetic.LEVEL_T,
            "-o",
            str(tmp_path / "a.json"),
            "-q",
        ],
        capsys,
    )
    assert code == 2 and "put the datasets before --anchors" in err, err
    for bad, msg in (
        (["--fix-scale", "nolevel"], "expected NAME=VALUE"),
        (["--fix-scale", f"{synthetic.LEVEL_S}=abc"], "not a number"),
        (["--fix-scale", f"{synthetic.LEVEL_S}=nan"], "finite number > 0"),
    ):
        code, _, err = run(
            [
                "fit",
                *data,
                "--anchors",
                str(paths["anchors"]),
                "--target",
                synthetic.LEVEL_T,
                *bad,
                "-o",
                str(tmp_path / "a.json"),
                "-q",
            ],
            capsys,
        )
        assert code == 2 and msg in err, (bad, err)
    # a fixed scale in any position is used as given
    code, _, err = run(
        [
            "fit",
            "--fix-scale",
            f"{synthetic.LEVEL_S}=1.0",
            *data,
            "--anchors",
            str(paths["anchors"]),
            "--target",
            synthetic.LEVEL_T,
            "-o",
            str(tmp_path / "a.json"),
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    assert (
        json.loads((tmp_path / "a.json").read_text())["levels"][synthetic.LEVEL_S]["scale"] == 1.0
    )


def test_inspect_shows_the_energies_an_aligned_file_holds(demo_data, tmp_path, capsys):
    paths, _ = demo_data
    data = specs(paths)
    assert (
        run(
            [
                "fit",
                *data,
                "--anchors",
                str(paths["anchors"]),
                "--target",
                synthetic.LEVEL_T,
                "-o",
                str(tmp_path / "al.json"),
                "-q",
            ],
            capsys,
        )[0]
        == 0
    )
    assert (
        run(
            [
                "apply",
                *data,
                "--alignment",
                str(tmp_path / "al.json"),
                "-o",
                str(tmp_path / "a.h5"),
                "-q",
            ],
            capsys,
        )[0]
        == 0
    )
    code, out, _ = run(["inspect", str(tmp_path / "a.h5"), "--json", "-q"], capsys)
    info = json.loads(out)
    s = next(v for v in info["sources"].values() if v["level_of_theory"] == synthetic.LEVEL_S)
    assert s["aligned_energy_per_atom_min"] != pytest.approx(s["energy_per_atom_min"], abs=1e-3)
    code, out, _ = run(["inspect", str(tmp_path / "a.h5"), "-q"], capsys)
    assert f"{s['aligned_energy_per_atom_min']:.4f}" in out and "after alignment" in out


def test_atomic_files_get_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o027)
    try:
        p = write_text_atomic(tmp_path / "x.txt", "hi")
        assert (p.stat().st_mode & 0o777) == 0o640
        os.chmod(p, 0o604)
        write_text_atomic(p, "again")  # a replaced file keeps its own mode
        assert (p.stat().st_mode & 0o777) == 0o604
    finally:
        os.umask(old)


def test_sigint_stops_apply_with_130_and_leaves_no_temporary(demo_data, tmp_path):
    """A long apply (the demo data repeated) interrupted by SIGINT: exit 130, no output, no hidden .partial file."""
    paths, _ = demo_data
    frames = [
        synthetic.label(a, synthetic.LEVEL_S)
        for a in synthetic.crystals(np.random.default_rng(0), 40)
    ] * 150
    for a in frames:
        a.info.pop("level_of_theory", None)
    ase.io.write(tmp_path / "big.extxyz", frames)
    code = "import sys; from tea_align.cli import main; sys.exit(main(sys.argv[1:]))"
    al = tmp_path / "al.json"
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "fit",
            *specs(paths),
            "--anchors",
            str(paths["anchors"]),
            "--target",
            synthetic.LEVEL_T,
            "-o",
            str(al),
            "-q",
        ],
        check=True,
    )
    p = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "apply",
            f"{tmp_path / 'big.extxyz'},level={synthetic.LEVEL_S}",
            "--alignment",
            str(al),
            "-o",
            str(tmp_path / "out.h5"),
            "--batch-size",
            "64",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while (
        not any(f.name.startswith(".out.h5.") for f in tmp_path.iterdir())
        and time.time() < deadline
        and p.poll() is None
    ):
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert not (tmp_path / "out.h5").exists()
    assert not [f.name for f in tmp_path.iterdir() if f.name.startswith(".out.h5.")]


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.h5.{dead.pid}.abc123.partial.h5"
    stale.write_bytes(b"\0" * 1000)
    live = (
        tmp_path / f".out.h5.{os.getppid()}.xyz.partial.h5"
    )  # a running process's temporary stays
    live.write_bytes(b"\0")
    write_text_atomic(tmp_path / "out.h5", "x")
    assert not stale.exists() and live.exists()


def test_a_full_disk_is_a_clean_error_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """apply on a disk that fills after the first batch: exit 1, one line naming the output, no partial file (HDF5 would
    crash the process on a failed write, so the space is checked before each batch; checked for real on a 1.5 MB tmpfs)."""
    path = _molecules(tmp_path / "m.extxyz", n=300)
    real = os.statvfs
    calls = {"n": 0}

    class Full:
        f_bavail, f_frsize = 10, 4096

    def statvfs(p):
        calls["n"] += 1
        return real(p) if calls["n"] == 1 else Full()

    monkeypatch.setattr(os, "statvfs", statvfs)
    code, _, err = run(
        [
            "apply",
            f"{path},level=L",
            "--alignment",
            str(_identity(tmp_path)),
            "--batch-size",
            "100",
            "-o",
            str(tmp_path / "out.h5"),
            "-q",
        ],
        capsys,
    )
    assert code == 1 and "no space left" in err and "out.h5" in err and err.count("\n") == 1, err
    assert calls["n"] >= 2
    assert not [f for f in tmp_path.iterdir() if f.name.startswith((".out.h5", "out.h5"))]


def test_ctrl_c_while_a_temporary_is_made_or_set_up_leaves_nothing(tmp_path, monkeypatch):
    """interrupts_deferred holds Ctrl-C to the end of its block (then raises it, the handler restored); a Ctrl-C that
    lands while AtomicFile creates its temporary, or while DatasetWriter sets up its HDF5 file, leaves no file behind."""
    import tempfile

    from tea_align.dataset import DatasetWriter
    from tea_align.files import AtomicFile, interrupts_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # without the deferral the KeyboardInterrupt is raised here
            done.append(1)
    assert done == [1] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    real = tempfile.mkstemp

    def interrupted_mkstemp(
        *a, **k
    ):  # the file exists, its name not yet returned, when Ctrl-C comes
        out = real(*a, **k)
        os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(tempfile, "mkstemp", interrupted_mkstemp)
    with pytest.raises(KeyboardInterrupt):
        AtomicFile(tmp_path / "out.json")
    monkeypatch.setattr(tempfile, "mkstemp", real)
    assert list(tmp_path.iterdir()) == []

    def interrupted_open(self, *a, **k):  # Ctrl-C half way through the HDF5 set-up
        raise KeyboardInterrupt

    monkeypatch.setattr(DatasetWriter, "_open", interrupted_open)
    with pytest.raises(KeyboardInterrupt):
        DatasetWriter(tmp_path / "out.h5")
    assert list(tmp_path.iterdir()) == []
