"""Cross-package checks: separate packages, one façade each, the documented boundaries hold."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"tea-align": "tea_align", "allegro-fm-model": "allegro_fm_model", "allegro-fm-md": "allegro_fm_md",
            "allegro-fm-bench": "allegro_fm_bench"}


@pytest.mark.parametrize("dist,mod", PACKAGES.items())
def test_each_package_is_separately_versioned(dist, mod):
    pkg = ROOT / "packages" / dist
    meta = tomllib.loads((pkg / "pyproject.toml").read_text())
    assert meta["project"]["name"] == dist
    assert meta["build-system"]["build-backend"] == "hatchling.build"
    assert (pkg / "README.md").exists() and (pkg / "CHANGELOG.md").exists()
    version = __import__(mod).__version__
    assert f"## {version}" in (pkg / "CHANGELOG.md").read_text()


def test_tea_align_never_imports_torch():
    code = "import sys, tea_align, tea_align.cli, tea_align.report; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    deps = tomllib.loads((ROOT / "packages/tea-align/pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(d.split(">")[0].split("=")[0] for d in deps) == ["ase", "h5py", "numpy"]


def test_no_package_imports_another_private_module():
    for dist in PACKAGES:
        for f in (ROOT / "packages" / dist / "src").rglob("*.py"):
            text = f.read_text()
            for other in PACKAGES.values():
                if other in str(f):
                    continue
                assert f"from {other}._" not in text and f"import {other}._" not in text, f


def test_element_table_is_the_papers_89():
    from tea_align import ALLEGRO_FM_ELEMENTS, NOBLE_GASES

    assert len(ALLEGRO_FM_ELEMENTS) == 89 == len(set(ALLEGRO_FM_ELEMENTS))
    assert ALLEGRO_FM_ELEMENTS[0] == "H" and ALLEGRO_FM_ELEMENTS[-1] == "Pu"
    assert {"Po", "At", "Rn", "Fr", "Ra"}.isdisjoint(ALLEGRO_FM_ELEMENTS)
    # SPICE/OFF23 elements are all covered
    assert {"H", "Li", "C", "N", "O", "F", "Na", "Mg", "P", "S", "Cl", "K", "Ca", "Br", "I"} <= set(ALLEGRO_FM_ELEMENTS)
    assert "Rn" in NOBLE_GASES and "Xe" in ALLEGRO_FM_ELEMENTS


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    cmds = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert cmds == ["./afm test"]
    assert "\n./afm test" in readme
