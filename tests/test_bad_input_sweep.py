"""A sweep of malformed inputs through the four command lines, one class of bad input per case: every case ends with
exit status 2 (bad input) or 3 (a guard), one line on stderr naming what is wrong, no traceback, nothing written
where the run was refused, and the inputs unchanged. Run in-process (the commands' own ``main``), so a case that
raised instead of exiting would fail here with its traceback."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

RUN = """[system]
structure = "{structure}"
[potential]
kind = "lj"
cutoff = 6.5
[run]
{run}
[output]
dir = "{out}"
{output}
"""


def _argon(path: Path, edit=None) -> Path:
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    if edit:
        edit(a)
    ase.io.write(path, a)
    return path


def _runfile(
    tmp: Path, name: str, run: str = "steps = 5", output: str = "", structure: str = "ar.extxyz"
) -> Path:
    p = tmp / f"{name}.toml"
    p.write_text(RUN.format(structure=structure, run=run, out=f"out-{name}", output=output))
    return p


def _md_cases(tmp: Path) -> list[tuple[str, list[str], str]]:
    _argon(tmp / "ar.extxyz")
    _argon(tmp / "nan.extxyz", lambda a: a.positions.__setitem__((5, 1), np.nan))
    _argon(tmp / "overlap.extxyz", lambda a: a.positions.__setitem__(7, a.positions[8] + 0.05))
    _argon(tmp / "two.extxyz", lambda a: a.symbols.__setitem__(3, "Kr"))
    (tmp / "garbage.extxyz").write_text("12\nnot extxyz\nAr 0 0\n")
    (tmp / "trunc.npz").write_bytes(b"PK\x03\x04" + b"\0" * 50)
    ase.io.write(tmp / "empty.extxyz", ase.Atoms(cell=[5, 5, 5], pbc=True))
    _argon(tmp / "far.extxyz", lambda a: a.positions.__setitem__((4, 0), 1e308))
    cases = [("missing run file", [str(tmp / "nope.toml")], "nope.toml")]
    (tmp / "binary.toml").write_bytes(b"\x00\x01\x02\xff\xfe")
    (tmp / "utf16.toml").write_text('[system]\nstructure = "ar.extxyz"\n', encoding="utf-16")
    cases += [
        ("binary run file", [str(tmp / "binary.toml")], "UTF-8"),
        ("UTF-16 run file", [str(tmp / "utf16.toml")], "UTF-8"),
    ]
    (tmp / "syntax.toml").write_text("[system\nstructure = 1\n")
    cases.append(("TOML syntax", [str(tmp / "syntax.toml")], "syntax.toml"))
    for name, run, msg in [
        ("steps-string", 'steps = "10"', "steps"),
        ("steps-negative", "steps = -5", "steps"),
        ("dt-huge", "dt_fs = 50.0", "dt_fs"),
        ("T-negative", "temperature_K = -10.0", "temperature_K"),
        ("T-nan", "temperature_K = nan", "temperature_K"),
        ("T-huge", "temperature_K = 1e308", "temperature_K"),
        ("unknown-integrator", 'integrator = "verlet2"', "verlet2"),
        ("unknown-key", "stpes = 5", "stpes"),
        ("npt-nve", "pressure_GPa = 1.0", "pressure_GPa"),
    ]:
        cases.append((name, [str(_runfile(tmp, name, run))], msg))
    for name, output, msg in [
        ("thermo-zero", "thermo_every = 0", "thermo_every"),
        ("restart-missing", 'restart_from = "gone.npz"', "gone.npz"),
        ("restart-truncated", 'restart_from = "trunc.npz"', "trunc.npz"),
    ]:
        cases.append((name, [str(_runfile(tmp, name, output=output))], msg))
    for name, structure, msg in [
        ("structure-missing", "absent.extxyz", "absent.extxyz"),
        ("structure-garbage", "garbage.extxyz", "garbage"),
        ("structure-nan", "nan.extxyz", "atom 5"),
        ("atoms-overlap", "overlap.extxyz", "7"),
        ("unknown-element", "two.extxyz", "Kr"),
        ("no-atoms", "empty.extxyz", "no atoms"),
        ("coordinate-1e308", "far.extxyz", "atom 4"),
    ]:
        cases.append((name, [str(_runfile(tmp, name, structure=structure))], msg))
    locked = _runfile(tmp, "locked")  # a live run (this process) holds the folder
    (tmp / "out-locked").mkdir()
    (tmp / "out-locked" / ".allegro-fm-md.lock").write_text(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    )
    cases.append(("folder in use", [str(locked), "--overwrite"], "in use by another run"))
    return [(f"md {n}", ["run", *argv], m) for n, argv, m in cases]


def _tea_cases(tmp: Path) -> list[tuple[str, list[str], str]]:
    good = molecule("H2O")
    good.calc = SinglePointCalculator(good, energy=-2078.0, forces=np.zeros((3, 3)))
    ase.io.write(tmp / "w.extxyz", [good])
    big = good.copy()
    big.calc = SinglePointCalculator(big, energy=1e308, forces=np.zeros((3, 3)))
    ase.io.write(tmp / "big.extxyz", [big])
    far = good.copy()
    far.positions[1, 2] = 1e308
    far.calc = SinglePointCalculator(far, energy=-2078.0, forces=np.zeros((3, 3)))
    ase.io.write(tmp / "far-w.extxyz", [far])
    nanf = good.copy()
    nanf.calc = SinglePointCalculator(nanf, energy=-2078.0, forces=np.full((3, 3), np.nan))
    ase.io.write(tmp / "nanf.extxyz", [nanf])
    (tmp / "latin.json").write_bytes('{"mp-1": {"x": "\xe9"}}'.encode("latin-1"))
    (tmp / "empty.json").write_text("{}")
    (tmp / "al-nan.json").write_text(
        json.dumps(
            {
                "format": "tea-align/alignment",
                "version": 1,
                "target_level": "L",
                "levels": {"S": {"level": "S", "scale": "nan", "shifts": {}}},
            }
        )
    )
    (tmp / "al-other.json").write_text(json.dumps({"format": "something-else"}))
    (tmp / "al-id.json").write_text(
        json.dumps(
            {"format": "tea-align/alignment", "version": 1, "target_level": "L", "levels": {}}
        )
    )
    w = f"{tmp / 'w.extxyz'},level=L"
    out = str(tmp / "tea-out.h5")
    return [
        ("tea missing input", ["convert", str(tmp / "nope.extxyz"), "-o", out], "nope.extxyz"),
        (
            "tea 1e308 energy",
            ["convert", f"{tmp / 'big.extxyz'},level=L", "-o", out],
            "energy per atom",
        ),
        (
            "tea NaN forces",
            ["convert", f"{tmp / 'nanf.extxyz'},level=L", "-o", out],
            "forces of atom 0",
        ),
        (
            "tea 1e308 coordinate",
            ["convert", f"{tmp / 'far-w.extxyz'},level=L", "-o", out],
            "atom 1 is at",
        ),
        ("tea non-UTF-8 JSON", ["convert", str(tmp / "latin.json"), "-o", out], "UTF-8"),
        ("tea empty MPtrj", ["convert", str(tmp / "empty.json"), "-o", out], "no frames"),
        (
            "tea NaN alignment",
            ["apply", w, "--alignment", str(tmp / "al-nan.json"), "-o", out],
            "not a finite number",
        ),
        (
            "tea foreign alignment",
            ["apply", w, "--alignment", str(tmp / "al-other.json"), "-o", out],
            "not a tea-align alignment",
        ),
        ("tea output is input", ["convert", w, "-o", str(tmp / "w.extxyz")], "also an input"),
        (
            "tea bad force unit",
            [
                "apply",
                w,
                "--alignment",
                str(tmp / "al-id.json"),
                "--max-force",
                "3 furlongs",
                "-o",
                out,
            ],
            "--max-force",
        ),
        ("tea bad option in spec", ["convert", f"{tmp / 'w.extxyz'},levl", "-o", out], "key=value"),
        (
            "tea unknown format",
            ["convert", f"{tmp / 'w.extxyz'},format=xyzz", "-o", out],
            "unknown format",
        ),
        ("tea level for no input", ["inspect", w, "--level", "zz=Q"], "no input is named"),
        (
            "tea anchors took the data",
            ["fit", "--anchors", w, w, "--target", "L", "-o", str(tmp / "a.json")],
            "--anchors",
        ),
        (
            "tea fix-scale garbage",
            [
                "fit",
                w,
                "--anchors",
                w,
                "--target",
                "L",
                "--fix-scale",
                "L",
                "-o",
                str(tmp / "a.json"),
            ],
            "NAME=VALUE",
        ),
    ]


def _model_cases(tmp: Path) -> list[tuple[str, list[str], str]]:
    (tmp / "notamodel.pt").write_text("hello")
    (tmp / "train.toml").write_text("[train]\ndataset = 'x.h5'\nmax_epocs = 3\n")
    import tea_align

    w = molecule("H2O")
    w.calc = SinglePointCalculator(w, energy=-14.2, forces=np.zeros((3, 3)))
    ase.io.write(tmp / "ft.extxyz", [w] * 20)
    tea_align.convert(
        [f"{tmp / 'ft.extxyz'},level=PBE~SevenNet-0"], tmp / "ft.h5"
    )  # the shipped model's level
    (tmp / "ft.toml").write_text('[train]\ndataset = "ft.h5"\nrun_dir = "out-ft"\n')
    return [
        (
            "model missing file",
            ["evaluate", str(tmp / "none.nequip.zip"), str(tmp / "d.h5")],
            "none.nequip.zip",
        ),
        (
            "model unknown freeze group",
            [
                "finetune",
                str(tmp / "ft.toml"),
                "--init-from",
                "allegro-fm-mini",
                "--freeze",
                "nonsense",
            ],
            "'nonsense'",
        ),
        (
            "model text file as model",
            ["evaluate", str(tmp / "notamodel.pt"), str(tmp / "d.h5")],
            "notamodel.pt",
        ),
        ("model unknown train key", ["train", str(tmp / "train.toml")], "max_epocs"),
        ("model missing train file", ["train", str(tmp / "no.toml")], "no.toml"),
    ]


def _bench_cases(tmp: Path) -> list[tuple[str, list[str], str]]:
    return [
        ("bench unknown experiment", ["run", "eoss", "--quick", "-o", str(tmp / "b")], "eoss"),
        (
            "bench unknown model",
            ["run", "eos", "--model", "nosuchmodel", "--quick", "-o", str(tmp / "b")],
            "nosuchmodel",
        ),
    ]


def _digest(folder: Path) -> dict:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
    }


@pytest.fixture(scope="module")
def mains():
    from allegro_fm_bench.cli import main as bench
    from allegro_fm_md.cli import main as md
    from allegro_fm_model.cli import main as model
    from tea_align.cli import main as tea

    return {"md": md, "tea": tea, "model": model, "bench": bench}


def test_every_bad_input_exits_2_with_one_named_line(tmp_path, capsys, mains, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = (
        _md_cases(tmp_path) + _tea_cases(tmp_path) + _model_cases(tmp_path) + _bench_cases(tmp_path)
    )
    before = _digest(tmp_path)
    failures = []
    for name, argv, msg in cases:
        try:
            code = mains[name.split()[0]]([*argv, "-q"] if name.split()[0] != "md" else argv)
        except SystemExit as exc:  # argparse's own refusals (usage + one error line, status 2)
            code = exc.code
        err = capsys.readouterr().err
        lines = [
            line
            for line in err.splitlines()
            if line.strip() and not line.startswith(("usage:", " ")) and "WARNING" not in line
        ]
        if code != 2 or "Traceback" in err or msg not in err or len(lines) != 1:
            failures.append(f"{name}: exit {code}, stderr {err!r}")
    assert not failures, "\n".join(failures)
    assert len(cases) == 46
    # inputs untouched; refused md runs left no output folder, refused tea runs no output file
    after = _digest(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before
    assert [p.name for p in tmp_path.glob("out-*")] == ["out-locked"] and not (
        tmp_path / "tea-out.h5"
    ).exists()
    assert [p.name for p in (tmp_path / "out-locked").iterdir()] == [".allegro-fm-md.lock"]
