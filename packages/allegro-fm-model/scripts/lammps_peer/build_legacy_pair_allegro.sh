#!/usr/bin/env bash
# A LAMMPS with the legacy pair_style allegro (pair_nequip_allegro v0.6.0): the peer that runs nequip 0.6 deployed
# files (the published afm256_01_HL.pt / afm512_01_HL.pt and what `allegro-fm finetune` writes from them).
#
#   packages/allegro-fm-model/scripts/lammps_peer/build_legacy_pair_allegro.sh WORKDIR [SUITE]
#   export AFM_LMP_ALLEGRO_LEGACY=WORKDIR/lammps/build/lmp
#   pytest packages/allegro-fm-model/tests/test_legacy_finetune.py -k pair_allegro
#
# Run from the repository root inside an environment with allegro-fm-model (torch, mpi4py + mpich). LAMMPS's source
# comes from Debian (apt-get source, as root): SUITE (default trixie, LAMMPS 4 Feb 2025; the v0.6.0 pair needs
# LAMMPS >= 2 Jun 2022's neighbor-request API, so bookworm's 2022-01 source does not build) is added as a deb-src
# entry with the URIs this machine's apt already uses. pair_nequip_allegro v0.6.0 comes from ../shared/third_party.
# About 10 minutes on 2 cores. Measured on 2026-12-06 with the fixture file: the ASE calculator's energy to 2e-7
# relative, forces to 6e-6 eV/A.
set -euo pipefail
work=$(realpath -m "${1:?usage: $0 WORKDIR [SUITE]}")
suite=${2:-trixie}
root=$(git rev-parse --show-toplevel)
pna="$root/../shared/third_party/pair_nequip_allegro-v0.6.0.tar.gz"
[ -f "$pna" ] || { echo "missing $pna" >&2; exit 1; }
python -c "import torch, mpi4py" || { echo "activate the environment with torch and mpi4py first" >&2; exit 1; }
mkdir -p "$work/apt" && cd "$work"

# a deb-src entry for SUITE with the URIs and keyring of the system's Debian source (no host named here)
sys_src=/etc/apt/sources.list.d/debian.sources
uris=$(awk '/^URIs:/ {print $2; exit}' "$sys_src")
key=$(awk '/^Signed-By:/ {print $2; exit}' "$sys_src")
printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' "$uris" "$suite" "$key" \
    > apt/lammps-src.sources
apt_opts=(-o Dir::Etc::SourceParts="$work/apt" -o Dir::Etc::SourceList=/dev/null
          -o Dir::State::Lists="$work/apt/lists" -o Dir::Cache="$work/apt/cache")
mkdir -p apt/lists/partial apt/cache/archives/partial
apt-get "${apt_opts[@]}" update
apt-get "${apt_opts[@]}" source --download-only lammps || true   # the .dsc may be gone from a mirror: the tarballs do
orig=$(ls lammps_*.orig.tar.* | head -1)
[ -n "$orig" ] || { echo "apt-get source gave no LAMMPS tarball" >&2; exit 1; }

rm -rf lammps src-unpack pna && mkdir src-unpack pna
tar xf "$orig" -C src-unpack && mv src-unpack/* lammps && rmdir src-unpack
tar xzf "$pna" -C pna
(cd pna/* && ./patch_lammps.sh "$work/lammps")

venv=$(dirname "$(dirname "$(command -v python)")")
mkdir -p lammps/build && cd lammps/build
cmake ../cmake -D CMAKE_BUILD_TYPE=Release -D BUILD_MPI=ON -D BUILD_OMP=OFF \
    -D MPI_CXX_COMPILER="$venv/bin/mpicxx" -D MPI_C_COMPILER="$venv/bin/mpicc" \
    -D CMAKE_PREFIX_PATH="$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')" -D MKL_INCLUDE_DIR=/tmp \
    -D WITH_JPEG=OFF -D WITH_PNG=OFF -D WITH_FFMPEG=OFF -D WITH_GZIP=OFF -D LAMMPS_EXCEPTIONS=ON
cmake --build . -j "$(nproc)"
echo "built: export AFM_LMP_ALLEGRO_LEGACY=$PWD/lmp"
