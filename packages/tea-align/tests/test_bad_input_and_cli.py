"""Bad input gives one clear error naming file and frame, exit status 2, and no output file."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from tea_align import synthetic
from tea_align.cli import main
from tea_testutil import specs


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _no_output_left(folder, name):
    return not any(p.name == name or p.name.startswith(f".{name}.") for p in folder.iterdir())


def _alignment(demo_data, tmp_path, capsys):
    paths, _ = demo_data
    code, _, err = run(
        [
            "fit",
            *specs(paths),
            "--anchors",
            str(paths["anchors"]),
            "--target",
            synthetic.LEVEL_T,
            "-o",
            str(tmp_path / "al.json"),
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    return tmp_path / "al.json"


def test_cli_fit_apply_inspect_report(demo_data, tmp_path, capsys):
    paths, truth = demo_data
    al = _alignment(demo_data, tmp_path, capsys)
    d = json.loads(al.read_text())
    assert d["format"] == "tea-align/alignment" and d["version"] == 1
    assert d["levels"][synthetic.LEVEL_S]["scale"] == pytest.approx(truth.alpha, rel=1e-6)
    code, out, err = run(
        ["apply", *specs(paths), "--alignment", str(al), "-o", str(tmp_path / "a.h5"), "-q"], capsys
    )
    assert code == 0, err
    assert "34 frames" in out
    code, out, _ = run(["inspect", str(tmp_path / "a.h5"), "-q"], capsys)
    assert code == 0 and "34 frames" in out and "Ca" in out
    code, out, _ = run(["report", str(al), "-o", str(tmp_path / "rep"), "-q"], capsys)
    assert code == 0 and "| periodic |" in out
    png = (tmp_path / "rep" / "residuals.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def _bad_files(tmp_path, rng):
    """(name, file, expected message fragment, expected frame fragment)."""
    import ase.io

    ok = [synthetic.label(a, synthetic.LEVEL_S) for a in synthetic.crystals(rng, 4)]
    for a in ok:
        a.info.pop("level_of_theory")  # the level is declared on the command line (level=L)
    out = []
    # truncated extxyz: the last frame is cut in the middle of its atom lines
    ase.io.write(tmp_path / "trunc.extxyz", ok)
    text = (tmp_path / "trunc.extxyz").read_text().splitlines()
    (tmp_path / "trunc.extxyz").write_text("\n".join(text[:-3]) + "\n")
    out.append(("trunc.extxyz,level=L", "cannot parse", "frame 3"))
    # NaN energy, inf force
    bad = [a.copy() for a in ok]
    for a, b in zip(ok, bad):
        b.calc = a.calc
    from ase.calculators.singlepoint import SinglePointCalculator

    bad[2].calc = SinglePointCalculator(bad[2], energy=float("nan"), forces=ok[2].get_forces())
    ase.io.write(tmp_path / "nan.extxyz", bad)
    out.append(("nan.extxyz,level=L", "energy is not finite", "frame 2"))
    f = ok[1].get_forces().copy()
    f[3, 1] = np.inf
    bad[2].calc = ok[2].calc
    bad[1].calc = SinglePointCalculator(bad[1], energy=-3.0, forces=f)
    ase.io.write(tmp_path / "inf.extxyz", bad)
    out.append(("inf.extxyz,level=L", "forces of atom 3 are not finite", "frame 1"))
    # MPtrj: truncated, missing key, unknown element, mismatched lengths
    synthetic.write_mptrj_json(ok, tmp_path / "mp.json")
    raw = (tmp_path / "mp.json").read_text()
    (tmp_path / "mp_trunc.json").write_text(raw[: len(raw) // 2])
    out.append(("mp_trunc.json", "truncated or malformed JSON", "mp_trunc.json"))
    doc = json.loads(raw)
    k1 = list(doc)[1]
    f1 = list(doc[k1])[0]
    d = json.loads(raw)
    del d[k1][f1]["force"]
    (tmp_path / "mp_missing.json").write_text(json.dumps(d))
    out.append(("mp_missing.json", "missing key 'force'", f"frame 2 ({k1}/{f1})"))
    d = json.loads(raw)
    d[k1][f1]["structure"]["sites"][0]["species"][0]["element"] = "Xx"
    (tmp_path / "mp_elem.json").write_text(json.dumps(d))
    out.append(("mp_elem.json", "unknown element symbol 'Xx'", "frame 2"))
    d = json.loads(raw)
    d[k1][f1]["force"] = d[k1][f1]["force"][:-1]
    (tmp_path / "mp_len.json").write_text(json.dumps(d))
    out.append(("mp_len.json", "'force' has shape", "frame 2"))
    (tmp_path / "empty.json").write_text("{}")
    out.append(("empty.json", "empty dataset", "empty.json"))
    # SPICE: missing gradient shape / energies count mismatch
    mol = [synthetic.label(a, synthetic.LEVEL_T) for a in synthetic.molecules(rng, 4)]
    synthetic.write_spice_h5(mol, tmp_path / "sp.h5", per_molecule=1)
    with h5py.File(tmp_path / "sp.h5", "a") as h5:
        g = h5[list(h5)[1]]
        e = g["dft_total_energy"][()]
        del g["dft_total_energy"]
        g["dft_total_energy"] = np.concatenate([e, e])
    out.append(("sp.h5,format=spice", "2 energies for 1 conformations", "frame 1"))
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    out.append(("junk.h5", "not a readable HDF5 file", "junk.h5"))
    return out


def test_bad_inputs_fail_cleanly(tmp_path, demo_data, capsys, rng):
    al = _alignment(demo_data, tmp_path, capsys)
    for spec, msg, where in _bad_files(tmp_path, rng):
        for argv in (
            ["convert", str(tmp_path / spec), "-o", str(tmp_path / "out.h5")],
            ["apply", str(tmp_path / spec), "--alignment", str(al), "-o", str(tmp_path / "out.h5")],
        ):
            code, _, err = run([*argv, "-q"], capsys)
            assert code == 2, (spec, err)
            assert msg in err and where in err and spec.split(",")[0] in err, (spec, err)
            assert err.count("\n") == 1, err
            assert _no_output_left(tmp_path, "out.h5"), spec


def test_output_equal_to_input_is_refused(tmp_path, demo_data, capsys):
    paths, _ = demo_data
    code, _, err = run(
        ["convert", str(paths["molecules"]), "-o", str(tmp_path / "m.h5"), "-q"], capsys
    )
    assert code == 0
    before = (tmp_path / "m.h5").read_bytes()
    code, _, err = run(
        ["convert", str(tmp_path / "m.h5"), "-o", str(tmp_path / "m.h5"), "-q"], capsys
    )
    assert code == 2 and "output path is also an input" in err
    assert (tmp_path / "m.h5").read_bytes() == before  # input untouched


def test_preprocessing_drops_noble_gases_and_large_forces(tmp_path, capsys):
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for k, (sym, fmax) in enumerate([("H2O", 1.0), ("XeO", 1.0), ("H2O", 13.0), ("CO", 12.8)]):
        a = Atoms(sym, positions=np.arange(3 * len(Atoms(sym))).reshape(-1, 3) * 0.7)
        f = np.zeros((len(a), 3))
        f[0, 2] = -fmax
        a.calc = SinglePointCalculator(a, energy=-10.0 - k, forces=f)
        frames.append(a)
    ase.io.write(tmp_path / "p.extxyz", frames)
    from tea_align.alignment import Alignment

    Alignment(target_level="L", levels={}).save(tmp_path / "id.json")
    code, out, err = run(
        [
            "apply",
            f"{tmp_path / 'p.extxyz'},level=L",
            "--alignment",
            str(tmp_path / "id.json"),
            "-o",
            str(tmp_path / "o.h5"),
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    assert (
        "2 frames" in out and "'noble_gas': 1" in out and "'max_force': 1" in out
    )  # 13 > 12.86 eV/A > 12.8
    code, out, err = run(
        [
            "apply",
            f"{tmp_path / 'p.extxyz'},level=L",
            "--alignment",
            str(tmp_path / "id.json"),
            "-o",
            str(tmp_path / "o2.h5"),
            "--max-force",
            "0.2 Hartree/Bohr",
            "--keep-noble-gases",
            "-q",
        ],
        capsys,
    )
    assert (
        code == 0 and "2 frames" in out and "'max_force': 2" in out
    )  # 0.2 Ha/Bohr = 10.3 eV/A: both go
    code, _, err = run(
        [
            "apply",
            f"{tmp_path / 'p.extxyz'},level=L",
            "--alignment",
            str(tmp_path / "id.json"),
            "-o",
            str(tmp_path / "o3.h5"),
            "--max-force",
            "0.2",
            "-q",
        ],
        capsys,
    )
    assert code != 0 and not (tmp_path / "o3.h5").exists()


def test_schema_version_and_units_mismatch(tmp_path, demo_data, capsys):
    paths, _ = demo_data
    run(["convert", str(paths["molecules"]), "-o", str(tmp_path / "m.h5"), "-q"], capsys)
    import shutil

    shutil.copy(tmp_path / "m.h5", tmp_path / "v2.h5")
    with h5py.File(tmp_path / "v2.h5", "a") as h5:
        h5.attrs["schema_version"] = 2
    code, _, err = run(["inspect", str(tmp_path / "v2.h5"), "-q"], capsys)
    assert code == 2 and "schema version 2 is not supported" in err
    shutil.copy(tmp_path / "m.h5", tmp_path / "u.h5")
    with h5py.File(tmp_path / "u.h5", "a") as h5:
        h5.attrs["units"] = json.dumps({"energy": "Hartree"})
    code, _, err = run(["inspect", str(tmp_path / "u.h5"), "-q"], capsys)
    assert code == 2 and "do not match schema units" in err


def test_level_names_an_input_by_its_whole_stem(tmp_path, demo_data, capsys):
    """`--level NAME=LEVEL` names an input by its file name without the format suffix, dots in it included
    (`periodic.v2.json` is `periodic.v2`, not `periodic`); a name that matches no input is refused, listing them."""
    import shutil

    from tea_align.readers import default_name

    assert (
        default_name("mptrj.v2.json") == "mptrj.v2"
        and default_name("spice-2.0.1.hdf5") == "spice-2.0.1"
    )
    assert default_name("md.extxyz.gz") == "md" and default_name("plain") == "plain"
    paths, _ = demo_data
    src = shutil.copy(paths["periodic"], tmp_path / "periodic.v2.json")
    code, out, err = run(
        [
            "convert",
            str(src),
            "--level",
            f"periodic.v2={synthetic.LEVEL_S}",
            "-o",
            str(tmp_path / "c.h5"),
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    import tea_align

    with tea_align.open_dataset(tmp_path / "c.h5") as ds:
        assert [(s.name, s.level_of_theory) for s in ds.sources] == [
            ("periodic.v2", synthetic.LEVEL_S)
        ]
    code, _, err = run(
        [
            "convert",
            str(src),
            "--level",
            f"periodic={synthetic.LEVEL_S}",
            "-o",
            str(tmp_path / "d.h5"),
            "-q",
        ],
        capsys,
    )
    assert code == 2 and "no input is named 'periodic' (inputs: periodic.v2)" in err
