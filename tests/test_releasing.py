"""The release procedure's CI check (scripts/release.py --check-changelogs): a package whose source changed since its
last release tag must have an '## Unreleased' CHANGELOG section. Checked on this repository, and on a clone with a
planted change (refused, naming the package) and then its entry (accepted)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("release", ROOT / "scripts" / "release.py")
release = importlib.util.module_from_spec(spec)
sys.modules["release"] = release
spec.loader.exec_module(release)


def test_this_repository_passes_the_changelog_check():
    assert release.check_changelogs() == []


def test_a_planted_change_without_a_changelog_entry_is_refused(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--shared", str(ROOT), str(clone)], check=True)
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@t"]
    version = release.version_of("tea-align", clone)
    if not release.released_versions(
        "tea-align", clone
    ):  # a clone before the first tags: release it here
        subprocess.run([*git, "tag", "-a", f"tea-align-v{version}", "-m", "test"], check=True)
    assert release.check_changelogs(clone) == []
    src = clone / "packages" / "tea-align" / "src" / "tea_align" / "units.py"
    src.write_text(src.read_text() + "\n# a planted change\n")
    subprocess.run([*git, "commit", "-qam", "planted"], check=True)
    problems = release.check_changelogs(clone)
    assert len(problems) == 1 and problems[0].startswith(
        "tea-align: its source changed since tea-align-v"
    )
    log = clone / "packages" / "tea-align" / "CHANGELOG.md"
    log.write_text(
        log.read_text().replace(
            "# Changelog\n", "# Changelog\n\n## Unreleased\n\n- a planted change\n", 1
        )
    )
    assert release.check_changelogs(clone) == []
    # the version was not raised: a release of it is refused before anything is built
    assert release.Version(version) in release.released_versions("tea-align", clone)
