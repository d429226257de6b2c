"""Cross-package checks: separate packages, one façade each, the documented boundaries hold."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "tea-align": "tea_align",
    "allegro-fm-model": "allegro_fm_model",
    "allegro-fm-md": "allegro_fm_md",
    "allegro-fm-bench": "allegro_fm_bench",
}


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
    deps = tomllib.loads((ROOT / "packages/tea-align/pyproject.toml").read_text())["project"][
        "dependencies"
    ]
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
    assert {"H", "Li", "C", "N", "O", "F", "Na", "Mg", "P", "S", "Cl", "K", "Ca", "Br", "I"} <= set(
        ALLEGRO_FM_ELEMENTS
    )
    assert "Rn" in NOBLE_GASES and "Xe" in ALLEGRO_FM_ELEMENTS


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    cmds = [
        line.strip()
        for line in ci.splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert (
        cmds[-1] == "./afm test" and cmds.count("./afm test") == 1
    )  # the README's command, once, last
    assert not any(
        "pytest" in c or "hatch" in c for c in cmds[:-1]
    )  # before it only installs (Slurm for its test)
    assert "\n./afm test" in readme


def _import_graph(src: Path, pkg: str) -> dict[str, set[str]]:
    """Module -> modules of the same package it imports (module level and inside functions), read with ast."""
    import ast

    graph: dict[str, set[str]] = {}
    for f in src.rglob("*.py"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        name = ".".join(parts)
        package = parts if rel.name == "__init__" else parts[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join(base + (node.module.split(".") if node.module else []))
                else:
                    target = node.module or ""
                names = [target + "." + a.name for a in node.names]
                deps.update(n for n in [target, *names] if n.startswith(pkg))
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith(pkg))
        graph[name] = deps
    return {
        m: {d for d in deps if d in graph and d != m and not m.startswith(d + ".") and d != pkg}
        for m, deps in graph.items()
    }


@pytest.mark.parametrize("dist,mod", PACKAGES.items())
def test_no_import_cycles(dist, mod):
    """Within each package the modules form a DAG (the package __init__, the façade, is left out: it imports all)."""
    graph = _import_graph(ROOT / "packages" / dist / "src", mod)
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError(
                    f"import cycle: {' -> '.join(path[path.index(d) :] + [d])}"
                    if d in path
                    else f"{m} -> {d}"
                )
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_markdown_tables_lose_no_rows():
    """A blank line inside a table ends it: the rows after it would render as plain text. Every table row of every
    README and doc must belong to a table that starts with a header and a |---| line."""
    files = [
        ROOT / "README.md",
        *ROOT.glob("packages/*/README.md"),
        *ROOT.glob("docs/**/*.md"),
        *ROOT.glob("packages/*/docs/*.md"),
        *ROOT.glob("packages/*/src/*/models/*.md"),
    ]
    bad = []
    for f in files:
        lines = f.read_text().splitlines()
        fence = False
        for k, line in enumerate(lines):
            if line.startswith("```"):
                fence = not fence
            if fence or not line.startswith("|"):
                continue
            prev = lines[k - 1] if k else ""
            nxt = lines[k + 1] if k + 1 < len(lines) else ""
            starts_table = not prev.startswith("|")
            if (
                starts_table
                and not nxt.replace(" ", "").startswith("|---")
                and not nxt.replace(" ", "").startswith("|:-")
            ):
                bad.append(f"{f.relative_to(ROOT)}:{k + 1}: {line[:60]}")
    assert not bad, "table rows outside a table (a blank line cut the table?):\n" + "\n".join(bad)


def test_the_readme_package_table_shows_the_versions_the_packages_report():
    """The root README's package table names each package's own __version__ (it said dev0 while the code said dev1)."""
    import importlib

    readme = (ROOT / "README.md").read_text()
    for dist, mod in PACKAGES.items():
        version = importlib.import_module(mod).__version__
        row = next(line for line in readme.splitlines() if line.startswith(f"| [{dist}]"))
        assert f"**{version}**" in row, (dist, version, row[:120])


def test_the_bench_wings_never_import_each_other():
    """allegro-fm-bench holds two products: the paper's experiments (experiments/) and the Allegro-FM-mini recipe (mini/).
    Both stand on the shared floor (structures, labelling, neb, report); neither wing imports the other (module level
    or inside functions), and the package has no import cycle (test_no_import_cycles)."""
    graph = _import_graph(ROOT / "packages" / "allegro-fm-bench" / "src", "allegro_fm_bench")
    wings = ("allegro_fm_bench.experiments", "allegro_fm_bench.mini")
    assert any(m.startswith(wings[0] + ".") for m in graph) and any(
        m.startswith(wings[1] + ".") for m in graph
    )
    for a, b in (wings, wings[::-1]):
        crossing = sorted(
            f"{m} -> {d}"
            for m, deps in graph.items()
            if m == a or m.startswith(a + ".")
            for d in deps
            if d == b or d.startswith(b + ".")
        )
        assert not crossing, crossing
    floor = [m for m in graph if not m.startswith(wings) and m not in ("allegro_fm_bench.cli",)]
    assert not sorted(f"{m} -> {d}" for m in floor for d in graph[m] if d.startswith(wings)), (
        "the floor imports a wing"
    )


def _says_why(line: str) -> bool:
    return "# lazy" in line or "# noqa: F401  (" in line


def _unexplained_lazy_imports(path: Path) -> list[str]:
    """Imports inside a function of ``path`` with no reason: a lazy import carries ``# lazy: ...`` (or a ``noqa`` naming
    why it is imported for its side effect) on one of its own lines, on an import of its group above it, or on the
    comment line just above that group."""
    import ast

    lines = path.read_text().splitlines()
    bad = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for stmt in ast.walk(node):
            if not isinstance(stmt, ast.Import | ast.ImportFrom) or stmt.col_offset == 0:
                continue
            if any(_says_why(line) for line in lines[stmt.lineno - 1 : stmt.end_lineno]):
                continue
            i = stmt.lineno - 2  # up over the group's other imports and blank lines
            while (
                i >= 0
                and not _says_why(lines[i])
                and (not lines[i].strip() or lines[i].strip().startswith(("import ", "from ")))
            ):
                i -= 1
            if i < 0 or not _says_why(lines[i]):
                bad.append(f"{path}:{stmt.lineno}: {lines[stmt.lineno - 1].strip()}")
    return bad


def test_every_lazy_import_says_why():
    """docs/architecture.md: imports sit at module level, and each one left inside a function says why."""
    bad = [
        b
        for src in sorted(ROOT.glob("packages/*/src/**/*.py"))
        for b in _unexplained_lazy_imports(src)
    ]
    assert not bad, "imports inside functions without a '# lazy: reason':\n" + "\n".join(bad)


def test_the_tree_is_linted_and_formatted():
    """`./afm lint` in the suite: ruff's checks pass and the code is ruff-formatted (100 columns)."""
    ruff = [sys.executable, "-m", "ruff"]
    paths = ["packages", "tests", "scripts"]
    check = subprocess.run([*ruff, "check", *paths], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout[-3000:]
    fmt = subprocess.run(
        [*ruff, "format", "--check", *paths], cwd=ROOT, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout[-3000:]


def test_citation_file_is_valid_cff_and_cites_the_paper():
    """CITATION.cff validates against the CFF 1.2 schema (cffconvert's own check) and its preferred citation is the
    paper the README's "How to cite" gives."""
    pytest.importorskip("cffconvert")
    code = "import sys; from cffconvert.cli.cli import cli; sys.argv[0] = 'cffconvert'; cli()"  # its console script
    r = subprocess.run(
        [sys.executable, "-c", code, "--validate", "-i", str(ROOT / "CITATION.cff")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "valid" in r.stdout, r.stdout + r.stderr
    title = "Allegro-FM: Towards Equivariant Foundation Model for Exascale Molecular Dynamics Simulations"
    assert (
        title in (ROOT / "CITATION.cff").read_text() and title in (ROOT / "README.md").read_text()
    )
