#!/bin/bash
# allegro-fm-md on a Slurm CPU cluster, as a job chain. Submit: sbatch slurm-cpu.sh run.toml
# Slurm sends SIGUSR1 two minutes before the wall time (--signal); every rank stops at the end of the current step with
# a restart at that step and exits 75; the job requeues itself and `--resume` continues from that restart. A job
# resubmitted after the run ended prints "nothing to do" and exits 0. AFM_CHAIN=manual: exit 75 instead of requeueing
# (you resubmit). SRUN_MPI: srun's --mpi plugin when the site's default does not suit your MPI (pip's MPICH: pmi2).
#SBATCH --job-name=allegro-fm-md
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=1
#SBATCH --time=01:00:00
#SBATCH --signal=USR1@120
#SBATCH --requeue
set -euo pipefail
RUNFILE=${1:-run.toml}
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
# the plan first: grid, atoms, ghosts and memory per rank
allegro-fm-md run "$RUNFILE" --dry-run --ranks "${SLURM_NTASKS:-2}"
status=0
srun ${SRUN_MPI:+--mpi=$SRUN_MPI} allegro-fm-md run "$RUNFILE" --resume || status=$?
if [ "$status" -eq 75 ] && [ "${AFM_CHAIN:-requeue}" = requeue ]; then   # stopped cleanly: continue in a new job
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
exit "$status"
