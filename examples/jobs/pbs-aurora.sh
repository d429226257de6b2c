#!/bin/bash
# allegro-fm-md on an Aurora-class PBS machine (Intel GPUs, PALS mpiexec): one MPI rank per Xe tile. With
# ZE_FLAT_DEVICE_HIERARCHY=FLAT each of a node's 6 GPUs shows its 2 tiles as 12 xpu devices; each rank takes
# xpu:<its node-local rank> (an MPI shared-memory split of COMM_WORLD). The run file says device = "xpu" (native
# torch.xpu; intel-extension-for-pytorch is used only if installed). Submit: qsub -v RUNFILE=run.toml pbs-aurora.sh
#PBS -N allegro-fm-md
#PBS -l select=2
#PBS -l walltime=01:00:00
#PBS -l filesystems=home:flare
#PBS -q prod
#PBS -A YOUR_PROJECT
set -euo pipefail
cd "${PBS_O_WORKDIR:-.}"
RUNFILE=${RUNFILE:-run.toml}
NNODES=$(wc -l < "${PBS_NODEFILE:-/dev/null}")
RANKS_PER_NODE=12
export ZE_FLAT_DEVICE_HIERARCHY=FLAT
export OMP_NUM_THREADS=8   # 12 ranks x 8 threads on 104 cores per node
allegro-fm-md run "$RUNFILE" --dry-run --ranks $((NNODES * RANKS_PER_NODE))
mpiexec -n $((NNODES * RANKS_PER_NODE)) --ppn "$RANKS_PER_NODE" --depth "$OMP_NUM_THREADS" --cpu-bind depth \
  allegro-fm-md run "$RUNFILE"
