#!/usr/bin/env bash
# Remake the legacy test fixture: a tiny Allegro 0.3.0 model trained and deployed with nequip 0.6.1, the way the
# published Allegro-FM files (afm256_01_HL.pt, afm512_01_HL.pt) were made, and nequip 0.6.1's own results on it.
#
#   bash packages/allegro-fm-model/scripts/legacy_fixture/make_legacy_fixture.sh [OUT]
#
# OUT (default packages/allegro-fm-model/tests/data/legacy) receives legacy-allegro-0.3.0.pth (nequip-deploy build),
# train.extxyz (its training frames), structures.extxyz and reference.json (NequIPCalculator results on them) and
# config.yaml. Needs: the workspace environment's python (PYTHON, default python: allegro_fm_model installed, for
# the frames) and the Allegro 0.3.0 source archive (ALLEGRO_TARBALL, default ../shared/third_party/allegro-0.3.0.tar.gz
# next to the repository). The nequip 0.6.1 environment is made in LEGACY_VENV (default runs/legacy-venv) on first
# use: nequip==0.6.1, e3nn<0.6, numpy<2 and torch==2.13.0 from PyPI. About 2 minutes after the install.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../.." && pwd)
out=$(realpath -m "${1:-$root/packages/allegro-fm-model/tests/data/legacy}")
venv=$(realpath -m "${LEGACY_VENV:-$root/runs/legacy-venv}")
tarball=${ALLEGRO_TARBALL:-$root/../shared/third_party/allegro-0.3.0.tar.gz}
py=${PYTHON:-python}
[ -f "$tarball" ] || { echo "make_legacy_fixture: Allegro 0.3.0 archive not found: $tarball (set ALLEGRO_TARBALL)" >&2; exit 2; }
"$py" -c "import allegro_fm_model, allegro_fm_bench" 2>/dev/null || { echo "make_legacy_fixture: $py lacks allegro_fm_model or allegro_fm_bench (set PYTHON to the workspace python)" >&2; exit 2; }

if ! [ -x "$venv/bin/nequip-deploy" ]; then
  echo "== nequip 0.6.1 environment -> $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "torch==2.13.0" "numpy<2" "e3nn<0.6" "nequip==0.6.1" ase
  "$venv/bin/pip" install -q --no-deps "$tarball"
fi
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1  # nequip 0.6.1 torch.load()s its own pickles
work=$(mktemp -d "${TMPDIR:-/tmp}/legacy-fixture.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "== frames (labelled by the shipped mini model)"
"$py" "$here/frames.py" "$work"
echo "== nequip-train (nequip 0.6.1, Allegro 0.3.0)"
sed "s#RUNROOT#$work/results#; s#DATAFILE#$work/train.extxyz#" "$here/config.yaml" > "$work/config.yaml"
(cd "$work" && "$venv/bin/nequip-train" config.yaml > train.log 2>&1) || { tail -30 "$work/train.log" >&2; exit 1; }
grep -E "^! (Train|Validation) " "$work/train.log" | tail -2
echo "== nequip-deploy build"
(cd "$work" && "$venv/bin/nequip-deploy" build --train-dir results/legacy legacy-allegro-0.3.0.pth 2>&1 | grep -v -i warn | tail -2)
echo "== reference results (nequip 0.6.1 NequIPCalculator)"
"$venv/bin/python" -W ignore "$here/reference.py" "$work/legacy-allegro-0.3.0.pth" "$work/structures.extxyz" "$work/reference.json"

mkdir -p "$out"
for f in legacy-allegro-0.3.0.pth train.extxyz structures.extxyz reference.json; do
  cp "$work/$f" "$out/.$f.tmp" && mv "$out/.$f.tmp" "$out/$f"
done
cp "$here/config.yaml" "$out/.config.yaml.tmp" && mv "$out/.config.yaml.tmp" "$out/config.yaml"
echo "wrote $out: $(ls "$out" | tr '\n' ' ')"
