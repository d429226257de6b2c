#!/bin/bash
# allegro-fm-md on a Slurm GPU cluster: one MPI rank per GPU. Each rank takes cuda:<its node-local rank> (found by an
# MPI shared-memory split of COMM_WORLD, not by the global rank modulo the GPU count), so no per-rank
# CUDA_VISIBLE_DEVICES wrapper is needed. The run file says device = "cuda". Submit: sbatch slurm-gpu.sh run.toml
# A job chain: Slurm sends SIGUSR1 two minutes before the wall time (--signal); every rank stops at the end of the
# current step with a restart at that step and exits 75; the job then requeues itself and `--resume` continues from
# that restart. A job resubmitted after the run ended prints "nothing to do" and exits 0.
#SBATCH --job-name=allegro-fm-md
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=01:00:00
#SBATCH --signal=USR1@120
#SBATCH --requeue
set -euo pipefail
RUNFILE=${1:-run.toml}
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}   # torch's CPU threads per rank (the neighbour lists run on them)
# the plan first: grid, atoms, ghosts and memory per rank; a grid that leaves a rank empty or too thin stops here
allegro-fm-md run "$RUNFILE" --dry-run --ranks "${SLURM_NTASKS:-8}"
status=0
srun --cpu-bind=cores allegro-fm-md run "$RUNFILE" --resume || status=$?
if [ "$status" -eq 75 ]; then   # stopped cleanly before the end: continue in a new job
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
exit "$status"
