#!/bin/bash
# allegro-fm-md on an Aurora-class PBS machine (Intel GPUs, PALS mpiexec): one MPI rank per Xe tile. With
# ZE_FLAT_DEVICE_HIERARCHY=FLAT each of a node's 6 GPUs shows its 2 tiles as 12 xpu devices; each rank takes
# xpu:<its node-local rank> (an MPI shared-memory split of COMM_WORLD). The run file says device = "xpu" (native
# torch.xpu; intel-extension-for-pytorch is used only if installed). Submit: qsub -v RUNFILE=run.toml pbs-aurora.sh
# A job chain: ALLEGRO_FM_END_TIME tells the run when the job ends; with [run] walltime_margin_s = 300 in the run file
# every rank stops 5 minutes before it with a restart at that step and exits 75, and the script submits the next job
# (`--resume` continues from that restart; after the end it prints "nothing to do" and exits 0). PBS's SIGTERM at the
# limit stops the run the same way.
#PBS -N allegro-fm-md
#PBS -l select=2
#PBS -l walltime=01:00:00
#PBS -l filesystems=home:flare
#PBS -q prod
#PBS -A YOUR_PROJECT
set -euo pipefail
cd "${PBS_O_WORKDIR:-.}"
RUNFILE=${RUNFILE:-run.toml}
JOBSCRIPT=${JOBSCRIPT:-pbs-aurora.sh}   # this script, for the next job of the chain
NNODES=$(wc -l < "${PBS_NODEFILE:-/dev/null}")
RANKS_PER_NODE=12
export ZE_FLAT_DEVICE_HIERARCHY=FLAT
# Device binding: each rank takes xpu:<node-local rank> of the 12 tiles it sees. A site wrapper that sets
# ZE_AFFINITY_MASK per rank (Aurora's gpu_tile_compact.sh) works too: each rank then sees one tile and takes xpu:0.
export OMP_NUM_THREADS=8   # 12 ranks x 8 threads on 104 cores per node
WALLTIME_S=3600            # keep equal to the walltime requested above
export ALLEGRO_FM_END_TIME=$(( $(date +%s) + WALLTIME_S ))
allegro-fm-md run "$RUNFILE" --dry-run --ranks $((NNODES * RANKS_PER_NODE))
status=0
mpiexec -n $((NNODES * RANKS_PER_NODE)) --ppn "$RANKS_PER_NODE" --depth "$OMP_NUM_THREADS" --cpu-bind depth \
  allegro-fm-md run "$RUNFILE" --resume || status=$?
if [ "$status" -eq 75 ]; then   # stopped cleanly before the end: continue in a new job
  qsub -v RUNFILE="$RUNFILE",JOBSCRIPT="$JOBSCRIPT" "$JOBSCRIPT"
  exit 0
fi
exit "$status"
