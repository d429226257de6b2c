"""The documentation site (`./afm docs`: MkDocs, strict) builds without a warning, and its generated references are
complete: every public name of the four packages in the API pages, every command and option in the CLI reference,
every run-file key (and every integrator kind's) in the run-file reference."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")
ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tea_align", "allegro_fm_model", "allegro_fm_md", "allegro_fm_bench")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "WARNING" not in r.stderr, r.stderr[-3000:]
    return out


@pytest.mark.parametrize("module", PACKAGES)
def test_every_public_name_is_in_the_api_reference(site, module):
    html = (site / "reference" / "api" / module / "index.html").read_text()
    mod = importlib.import_module(module)
    missing = [
        n
        for n in mod.__all__
        if f'id="{module}.{n}"' not in html
        and f'id="{module}.{n}.{n}"'
        not in html  # a name that is also its submodule's (tea_align.progress)
        and not (n == "__version__" and f"{module}.__version__" in html)
    ]
    assert not missing, f"not in the API reference: {missing}"


def test_every_command_and_option_is_in_the_cli_reference(site):
    text = (site / "reference" / "cli" / "index.html").read_text()
    for prog, module in (
        ("tea-align", "tea_align.cli"),
        ("allegro-fm", "allegro_fm_model.cli"),
        ("allegro-fm-md", "allegro_fm_md.cli"),
        ("allegro-fm-bench", "allegro_fm_bench.cli"),
    ):
        ap = importlib.import_module(module).build_parser()
        sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
        for name, p in sub.choices.items():
            assert f"{prog} {name}" in text
            for a in p._actions:
                if isinstance(a, argparse._HelpAction):
                    continue  # -h: in every usage line
                for opt in a.option_strings:
                    assert f"<code>{opt}</code>" in text, (prog, name, opt)


def test_every_run_file_key_is_in_the_run_file_reference(site):
    from allegro_fm_md import runfile
    from allegro_fm_md.integrators import integrator_kinds

    text = (site / "reference" / "run-file" / "index.html").read_text()
    for klass in (runfile.SystemSpec, runfile.PotentialSpec, runfile.RunSpec, runfile.OutputSpec):
        for f in dataclasses.fields(klass):
            assert f"<code>{f.name}</code>" in text, (klass.__name__, f.name)
    for name, kind in integrator_kinds().items():
        assert f"<code>{name}</code>" in text
        for f in dataclasses.fields(kind.options):
            assert f"<code>{f.name}</code>" in text, (name, f.name)
    assert (
        "<code>dt_fs</code></td>" in text and "&gt; 0, &lt;= 10" in text
    )  # a range, from the code's table


def test_a_run_file_key_without_a_description_fails_the_build(monkeypatch):
    """The reference refuses a key the code does not describe (a new key must come with its '#:' line)."""
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        hooks = importlib.import_module("hooks")
    finally:
        sys.path.pop(0)

    @dataclasses.dataclass
    class Table:
        #: described
        a: int = 1
        b: int = 2

    with pytest.raises(ValueError, match="key 'b'"):
        hooks._table(Table, None, "[test]")
