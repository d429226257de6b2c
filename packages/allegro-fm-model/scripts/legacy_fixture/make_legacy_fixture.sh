#!/usr/bin/env bash
# Remake the legacy test fixture: a tiny Allegro 0.3.0 model trained and deployed with nequip 0.6.1, the way the
# published Allegro-FM files (afm256_01_HL.pt, afm512_01_HL.pt) were made, and nequip 0.6.1's own results on it.
#
#   bash packages/allegro-fm-model/scripts/legacy_fixture/make_legacy_fixture.sh [OUT]
#   bash packages/allegro-fm-model/scripts/legacy_fixture/make_legacy_fixture.sh --fm256 [OUT]
#
# --fm256: a model of the published Allegro-FM256's size and structure instead (config_fm256.yaml: 89 elements,
# 64 tensor features, latent MLPs of 256; 780 k parameters, 3.3 MB), trained one epoch on the shipped train.extxyz.
# It is not shipped: OUT (default runs/legacy-fm256) receives legacy-fm256.pth, and the repository's
# tests/data/legacy/reference-fm256.json receives nequip 0.6.1's results on structures.extxyz with the file's SHA-256
# (the tests and benchmarks/bench_legacy_port.py use the file when it is there and matches).
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
fm256=0
if [ "${1:-}" = "--fm256" ]; then fm256=1; shift; fi
data=$root/packages/allegro-fm-model/tests/data/legacy
if [ "$fm256" = 1 ]; then
  out=$(realpath -m "${1:-$root/runs/legacy-fm256}")
else
  out=$(realpath -m "${1:-$data}")
fi
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

if [ "$fm256" = 1 ]; then
  echo "== FM256-size model (nequip 0.6.1, Allegro 0.3.0), one epoch on the shipped frames"
  sed "s#RUNROOT#$work/results#; s#DATAFILE#$data/train.extxyz#" "$here/config_fm256.yaml" > "$work/config.yaml"
  (cd "$work" && "$venv/bin/nequip-train" config.yaml > train.log 2>&1) || { tail -30 "$work/train.log" >&2; exit 1; }
  (cd "$work" && "$venv/bin/nequip-deploy" build --train-dir results/legacy-fm256 legacy-fm256.pth 2>&1 | grep -v -i warn | tail -1)
  "$venv/bin/python" -W ignore "$here/reference.py" "$work/legacy-fm256.pth" "$data/structures.extxyz" "$work/reference-fm256.json"
  mkdir -p "$out"
  cp "$work/legacy-fm256.pth" "$out/.legacy-fm256.pth.tmp" && mv "$out/.legacy-fm256.pth.tmp" "$out/legacy-fm256.pth"
  cp "$work/reference-fm256.json" "$data/.reference-fm256.json.tmp" && mv "$data/.reference-fm256.json.tmp" "$data/reference-fm256.json"
  echo "wrote $out/legacy-fm256.pth and $data/reference-fm256.json"
  exit 0
fi

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
