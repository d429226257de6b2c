#!/usr/bin/env bash
# Each package installs alone in a fresh venv (its declared dependencies only; sibling packages from wheels built
# here) and its command line's main path runs. Usage: bash scripts/check_install_alone.sh [PACKAGE...]
# Needs a package index (PyPI or a mirror) for the dependencies; torch is pinned to the CPU build of torch==2.13.0.
# About 10 minutes for all four on 2 cores (two of them install torch). Exit 0 only when every package passed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PKGS=("$@")
[ ${#PKGS[@]} -gt 0 ] || PKGS=(tea-align allegro-fm-md allegro-fm-model allegro-fm-bench)
echo "torch==2.13.0" > "$WORK/constraints.txt"
export PIP_CONSTRAINT="$WORK/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1

"$PY" -m pip wheel -q --no-deps -w "$WORK/wheels" packages/tea-align packages/allegro-fm-model packages/allegro-fm-md packages/allegro-fm-bench \
  || { echo "FAIL: building the wheels"; exit 1; }

main_path() {  # $1 package; runs inside the venv, in a scratch folder
  case "$1" in
    tea-align)
      tea-align --version && tea-align demo -q -o demo && test -s demo/aligned.h5 && test -s demo/report/report.md ;;
    allegro-fm-md)
      python - <<'PY' && allegro-fm-md --version && allegro-fm-md run run.toml && test -s md/trajectory.h5md && allegro-fm-md rdf md/trajectory.h5md -o gr.png
import ase.io
from ase.build import bulk
ase.io.write("ar.extxyz", bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3))
open("run.toml", "w").write('[system]\nstructure = "ar.extxyz"\n[potential]\nkind = "lj"\ncutoff = 6.5\n'
                            '[run]\nsteps = 50\ntemperature_K = 60\n[output]\ndir = "md"\ntrajectory_every = 10\n')
PY
      ;;
    allegro-fm-model)
      allegro-fm --version && allegro-fm params && python - <<'PY'
import numpy as np
from allegro_fm_model import AllegroFMCalculator, load_potential
from ase.build import molecule
m = molecule("H2O")
m.calc = AllegroFMCalculator(load_potential("allegro-fm-mini"))
e, f = m.get_potential_energy(), m.get_forces()
assert np.isfinite(e) and np.isfinite(f).all(), (e, f)
print(f"allegro-fm-mini on H2O: {e:.4f} eV")
PY
      ;;
    allegro-fm-bench)
      allegro-fm-bench --version && allegro-fm-bench run params --quick -o bench && test -s bench/report.md ;;
  esac
}

status=0
for pkg in "${PKGS[@]}"; do
  venv="$WORK/venv-$pkg"
  "$PY" -m venv "$venv"
  if ! "$venv/bin/pip" install -q --find-links "$WORK/wheels" "$pkg" > "$WORK/$pkg-install.log" 2>&1; then
    echo "FAIL $pkg: install"; tail -5 "$WORK/$pkg-install.log"; status=1; continue
  fi
  mkdir -p "$WORK/run-$pkg"
  if (cd "$WORK/run-$pkg" && PATH="$venv/bin:$PATH" main_path "$pkg") > "$WORK/$pkg-run.log" 2>&1; then
    echo "ok   $pkg: installed alone ($("$venv/bin/pip" list 2>/dev/null | grep -ciE '^(tea-align|allegro-fm)') project packages) and its main path ran"
  else
    echo "FAIL $pkg: main path"; tail -15 "$WORK/$pkg-run.log"; status=1
  fi
done
exit $status
