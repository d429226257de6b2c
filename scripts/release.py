"""Release one package of the monorepo: ``./afm release PACKAGE [--dry-run]`` (docs/releasing.md).

Checks, in order, stopping at the first failure (exit 1, one line saying what to fix):
1. the version (``src/<module>/__about__.py``) has no release tag ``PACKAGE-vVERSION`` yet;
2. the package's CHANGELOG.md has a ``## VERSION`` section;
3. sdist and wheel build (hatchling) and pass ``twine check``;
4. the wheel installs alone in a fresh virtual environment together with the *lowest* versions of its sibling
   packages that its ranges allow (each built from its release tag, or from the tree when it has no tag yet), and
   the package's smoke command runs there;
then tags ``PACKAGE-vVERSION`` (annotated; not pushed) unless ``--dry-run``, and prints the upload command. Nothing
is uploaded. ``--check-changelogs``: every package whose source changed since its last release tag has an
``## Unreleased`` section in its CHANGELOG (the CI check; exit 1 naming the package otherwise).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "tea-align": "tea_align",
    "allegro-fm-model": "allegro_fm_model",
    "allegro-fm-md": "allegro_fm_md",
    "allegro-fm-bench": "allegro_fm_bench",
}
#: each package's smoke command in the fresh environment (bash, run in an empty folder; $BIN is the venv's bin)
SMOKE = {
    "tea-align": "$BIN/tea-align --version && $BIN/tea-align demo -o demo -q && test -s demo/aligned.h5",
    "allegro-fm-model": (
        '$BIN/allegro-fm --version && $BIN/python -c "from allegro_fm_model import load_potential; '
        "p = load_potential('allegro-fm-mini'); assert set(p.species) == {'H', 'C', 'O', 'Si', 'Ca'}\""
    ),
    "allegro-fm-md": (
        "$BIN/python -c \"from ase.build import bulk; bulk('Ar', 'fcc', a=5.26, cubic=True).write('ar.extxyz')\" && "
        'printf \'[system]\\nstructure = "ar.extxyz"\\nreplicate = [3, 3, 3]\\n[potential]\\nkind = "lj"\\n'
        '[run]\\nintegrator = "nve"\\nsteps = 20\\ntemperature_K = 40\\n[output]\\ndir = "out"\\n\' > run.toml && '
        "$BIN/allegro-fm-md run run.toml -q && test -s out/thermo.log"
    ),
    "allegro-fm-bench": (
        '$BIN/allegro-fm-bench --version && $BIN/python -c "import allegro_fm_bench.experiments, '
        'allegro_fm_bench.mini.minidata"'
    ),
}
#: the CPU wheel of torch every dev/test environment uses (pip finds it locally; unpinned it fetches a CUDA build)
CONSTRAINTS = "torch==2.13.0\n"


class ReleaseError(RuntimeError):
    """A check failed; the message says what to fix."""


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def version_of(package: str, root: Path = ROOT) -> str:
    """The version in the package's ``__about__.py`` (under ``root``)."""
    text = (root / "packages" / package / "src" / PACKAGES[package] / "__about__.py").read_text()
    return re.search(r'__version__\s*=\s*"([^"]+)"', text).group(1)


def released_versions(package: str, root: Path = ROOT) -> list[Version]:
    """Versions of ``package`` with a release tag ``PACKAGE-vX``, lowest first."""
    tags = _git("tag", "--list", f"{package}-v*", cwd=root).split()
    return sorted(Version(t.removeprefix(f"{package}-v")) for t in tags)


def check_changelogs(root: Path = ROOT) -> list[str]:
    """Packages whose source changed since their last release tag but whose CHANGELOG has no ``## Unreleased``
    section (one line each); [] when every changed package has one."""
    problems = []
    for package in PACKAGES:
        done = released_versions(package, root)
        if not done:
            continue  # never released: its first release checks its version section
        tag = f"{package}-v{done[-1]}"
        changed = (
            subprocess.run(
                [
                    "git",
                    "diff",
                    "--quiet",
                    tag,
                    "--",
                    f"packages/{package}/src",
                    f"packages/{package}/pyproject.toml",
                ],
                cwd=root,
            ).returncode
            != 0
        )
        changed |= bool(
            _git("status", "--porcelain", "--", f"packages/{package}/src", cwd=root).strip()
        )
        log = (root / "packages" / package / "CHANGELOG.md").read_text()
        if changed and not re.search(r"^## Unreleased\b", log, re.M):
            problems.append(
                f"{package}: its source changed since {tag} and CHANGELOG.md has no '## Unreleased' section"
            )
    return problems


def _build(package: str, root: Path, out: Path) -> list[Path]:
    """sdist + wheel of ``root/packages/package`` into ``out`` (hatchling)."""
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.iterdir())
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-d", str(out)],
        cwd=root / "packages" / package,
        check=True,
        capture_output=True,
        text=True,
    )
    return sorted(set(out.iterdir()) - before)


def _requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(z.read(meta).decode())
    return [Requirement(r) for r in msg.get_all("Requires-Dist") or []]


def _sibling_wheels(wheel: Path, work: Path) -> dict[str, tuple[str, Path]]:
    """The lowest allowed version of every sibling the wheel needs (transitively, extras not included), each built
    from its release tag or from the tree: {package: (version, wheel)}."""
    chosen: dict[str, tuple[str, Path]] = {}
    todo = [r for r in _requirements(wheel) if r.name in PACKAGES and r.marker is None]
    while todo:
        req = todo.pop()
        if req.name in chosen:
            continue
        tree = Version(version_of(req.name))
        candidates = sorted({*released_versions(req.name), tree})
        allowed = [v for v in candidates if req.specifier.contains(v, prereleases=True)]
        if not allowed:
            raise ReleaseError(
                f"no version of {req.name} satisfies {req} (tags and tree: {[str(v) for v in candidates]})"
            )
        v = allowed[0]
        if v not in released_versions(req.name):  # the tree's version, not tagged yet
            src = ROOT
        else:
            src = work / f"src-{req.name}-{v}"
            if not src.exists():
                _git("worktree", "add", "--detach", str(src), f"{req.name}-v{v}")
        built = [p for p in _build(req.name, src, work / "siblings") if p.suffix == ".whl"]
        chosen[req.name] = (str(v), built[0])
        todo += [r for r in _requirements(built[0]) if r.name in PACKAGES and r.marker is None]
    return chosen


def release(package: str, dry_run: bool, keep: Path | None = None) -> str:
    """Run the checks and (unless ``dry_run``) tag; returns the upload command. ReleaseError on a failed check."""
    if package not in PACKAGES:
        raise ReleaseError(f"unknown package {package!r}; one of {', '.join(PACKAGES)}")
    version = version_of(package)
    tag = f"{package}-v{version}"
    if Version(version) in released_versions(package):
        raise ReleaseError(
            f"{package} {version} is already released (tag {tag}): raise the version in __about__.py"
        )
    log = (ROOT / "packages" / package / "CHANGELOG.md").read_text()
    if not re.search(rf"^## {re.escape(version)}\b", log, re.M):
        raise ReleaseError(
            f"packages/{package}/CHANGELOG.md has no '## {version}' section: write it first"
        )
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=f"release-{package}-"))
    try:
        dist = _build(package, ROOT, work / "dist")
        print(f"built {', '.join(p.name for p in dist)}")
        r = subprocess.run(
            [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise ReleaseError(f"twine check failed:\n{r.stdout}{r.stderr}")
        print("twine check: PASSED")
        wheel = next(p for p in dist if p.suffix == ".whl")
        siblings = _sibling_wheels(wheel, work)
        for name, (v, _) in sorted(siblings.items()):
            print(f"lowest allowed sibling: {name} {v}")
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        (work / "constraints.txt").write_text(CONSTRAINTS)
        pip = [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            str(work / "constraints.txt"),
        ]
        r = subprocess.run(
            [*pip, str(wheel), *(str(w) for _, w in siblings.values())],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise ReleaseError(
                f"the wheel does not install with its lowest siblings:\n{r.stderr[-3000:]}"
            )
        smoke = work / "smoke"
        smoke.mkdir(exist_ok=True)
        r = subprocess.run(
            ["bash", "-c", SMOKE[package]],
            cwd=smoke,
            capture_output=True,
            text=True,
            env={**os.environ, "BIN": str(venv / "bin"), "PYTHONPATH": ""},
        )
        if r.returncode != 0:
            raise ReleaseError(
                f"smoke command failed in the fresh environment:\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
            )
        print(f"smoke command passed in a fresh environment: {SMOKE[package].split(' && ')[0]} ...")
        if dry_run:
            print(f"dry run: {tag} not tagged")
        else:
            _git("tag", "-a", tag, "-m", f"{package} {version}")
            print(f"tagged {tag} (not pushed: git push origin {tag})")
        return f"python -m twine upload {' '.join(str(p) for p in dist)}"
    finally:
        for wt in work.glob("src-*"):
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT, capture_output=True
            )
        if keep is None and dry_run:  # a real release keeps its built files for the upload command
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./afm release", description=__doc__.splitlines()[0])
    ap.add_argument("package", nargs="?", choices=list(PACKAGES))
    ap.add_argument("--dry-run", action="store_true", help="every check, no tag")
    ap.add_argument(
        "--keep", type=Path, help="work folder to keep (built files, the fresh environment)"
    )
    ap.add_argument("--check-changelogs", action="store_true", help="only the CI changelog check")
    args = ap.parse_args(argv)
    if args.check_changelogs:
        problems = check_changelogs()
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    if not args.package:
        ap.error("a package is required (or --check-changelogs)")
    try:
        upload = release(args.package, args.dry_run, args.keep)
    except (ReleaseError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        print(
            f"release {args.package}: {exc}{(chr(10) + detail[-2000:]) if detail else ''}",
            file=sys.stderr,
        )
        return 1
    print(
        f"to publish: {upload}"
        if not args.dry_run
        else "dry run passed: ./afm release " + args.package + " tags it"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
