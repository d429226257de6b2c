"""The control flow of scripts/make_mini_model.sh with its three commands (allegro-fm-bench, tea-align, allegro-fm) and
python replaced by stubs that log their arguments and create the files they would write: which model each active
round labels, what each fine-tune starts from and keeps the split of, and which model is evaluated and exported.
(The stages themselves are tested in their own modules; the recipe's full run is the model card's remake.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "scripts" / "make_mini_model.sh"
STUB = r"""#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$STUB_LOG"
if [ "$(basename "$0")" = allegro-fm ] && [ "$1" = train ]; then  # a run folder with its best checkpoint
  d=$(dirname "$2")/$(sed -n 's/^run_dir = "\(.*\)"/\1/p' "$2"); mkdir -p "$d"; echo "$2" > "$d/best.ckpt"
fi
prev=""
for a in "$@"; do if [ "$prev" = "-o" ]; then mkdir -p "$(dirname "$a")"; : > "$a"; fi; prev=$a; done
exit 0
"""


def run_recipe(tmp_path: Path, *args: str) -> tuple[list[str], Path]:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name in ("allegro-fm-bench", "tea-align", "allegro-fm", "python"):
        (bin_ / name).write_text(STUB)
        (bin_ / name).chmod(0o755)
    log = tmp_path / "calls.log"
    out = tmp_path / "run"
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "STUB_LOG": str(log)}
    env.pop("AFM_LABELS", None)
    r = subprocess.run(
        ["bash", str(RECIPE), str(out), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return log.read_text().splitlines(), out


def test_default_recipe_makes_the_shipped_round4_model_without_a_band_loop(tmp_path):
    calls, out = run_recipe(tmp_path)
    assert not any("--band-loop" in c or "--round 5" in c for c in calls)
    assert f"allegro-fm export {out}/round4/best.ckpt -o {out}/allegro-fm-mini.nequip.zip" in calls
    assert (
        f"allegro-fm evaluate {out}/round4/best.ckpt {out}/aligned-round4.h5 --split test -o {out}/test_errors.md"
        in calls
    )
    assert (
        out / "round4" / "init.ckpt"
    ).read_text().strip() == f"{out}/round3.toml"  # round 4 starts from round 3's best


def test_band_loop_labels_each_iterations_model_and_keeps_every_earlier_split(tmp_path):
    """ROUND5_EPOCHS 2, ROUND5_ITERATIONS 3: iteration k labels the model of iteration k - 1 (round 4's for k = 1), its
    fine-tune starts from that model and keeps the split of rounds 1-4 and of iterations 1..k-1; the last one is
    evaluated and exported."""
    calls, out = run_recipe(tmp_path, "1", "1", "1", "1", "1", "2", "3")
    loops = [c for c in calls if "--band-loop" in c]
    assert len(loops) == 3
    models = [f"{out}/round4/best.ckpt", f"{out}/round5.1/best.ckpt", f"{out}/round5.2/best.ckpt"]
    for k, (c, m) in enumerate(zip(loops, models), 1):
        assert c.startswith(
            f"allegro-fm-bench make-active-data {m} --round 5 --part molecular --no-md --band-loop {k} "
        )
        assert f"--reaction-path {out}/neb-reference" in c
        made_by = (
            f"{out}/round4.toml" if k == 1 else f"{out}/round5.{k - 1}.toml"
        )  # the stub's best.ckpt: its TOML
        assert (out / f"round5.{k}" / "init.ckpt").read_text().strip() == made_by
        toml = (out / f"round5.{k}.toml").read_text()
        assert "max_epochs = 2" in toml and f'dataset = "aligned-round5.{k}.h5"' in toml
        keep = [
            '"aligned.h5"',
            '"aligned-round2.h5"',
            '"aligned-round3.h5"',
            '"aligned-round4.h5"',
        ] + [f'"aligned-round5.{j}.h5"' for j in range(1, k)]
        assert f"split_keep = [{', '.join(keep)}]" in toml
    pbe = [c for c in calls if "--round 5 --part pbe" in c]
    assert len(pbe) == 1 and pbe[0].startswith(
        f"allegro-fm-bench make-active-data {out}/round4/best.ckpt"
    )
    assert (
        f"allegro-fm export {out}/round5.3/best.ckpt -o {out}/allegro-fm-mini.nequip.zip" in calls
    )
    assert (
        f"allegro-fm evaluate {out}/round5.3/best.ckpt {out}/aligned-round5.3.h5 --split test -o {out}/test_errors.md"
        in calls
    )
