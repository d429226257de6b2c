"""Where a batch job is stopped cleanly: scheduler signals and the wall time.

Slurm and PBS send SIGTERM at the wall-time limit (Slurm's ``--signal=USR1@120`` sends SIGUSR1 earlier) and SIGKILL
some seconds later. During a run's step loop ``StopRequest`` turns SIGTERM and SIGUSR1 into a flag; the simulation
checks it on every rank at the end of each step (one 4-byte MAX reduction), writes a restart at the current step on
all ranks, closes its trajectories and stops with ``RunStopped`` (the command line exits 75: resubmit to continue; a
run file with ``restart_from = "auto"`` resumes from that restart). ``walltime_margin_s`` > 0 stops the same way when
less than that remains of the job, read from ``SLURM_JOB_END_TIME`` (Slurm sets it, epoch seconds) or
``ALLEGRO_FM_END_TIME`` (set it in a PBS script: ``$(( $(date +%s) + WALLTIME_S ))``).
"""

from __future__ import annotations

import os
import signal
import threading
import time

#: environment variables holding the job's end time (epoch seconds), in the order they are read
END_TIME_VARIABLES = ("ALLEGRO_FM_END_TIME", "SLURM_JOB_END_TIME")
#: the signals that request a clean stop
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class RunStopped(Exception):
    """A run stopped before its end at ``step`` (``reason``: the signal or the wall time), restart written to ``restart``."""

    def __init__(self, step: int, reason: str, restart):
        self.step, self.reason, self.restart = step, reason, restart
        super().__init__(
            f"stopped at step {step} ({reason}); restart written to {restart}: resubmit to continue"
        )


def job_end_time(environ=None) -> float | None:
    """The job's end (epoch seconds) from ``END_TIME_VARIABLES``, or None."""
    env = os.environ if environ is None else environ
    for var in END_TIME_VARIABLES:
        v = env.get(var, "")
        try:
            return float(v)
        except ValueError:
            continue
    return None


class StopRequest:
    """Within its ``with`` block, SIGTERM and SIGUSR1 set ``reason`` instead of killing the process (main thread only;
    elsewhere nothing is installed), and ``due()`` is also true when ``margin_s`` > 0 and less than that remains of the
    job's wall time. The previous handlers come back when the block ends."""

    def __init__(self, margin_s: float = 0.0, end_time: float | None = None):
        self.reason: str | None = None
        self.end = end_time if end_time is not None else (job_end_time() if margin_s > 0 else None)
        self.margin = float(margin_s)
        self._old: dict = {}

    def _handler(self, signum, frame) -> None:
        self.reason = signal.Signals(signum).name

    def due(self) -> bool:
        """True once a stop signal came or the wall-time margin is reached (this rank's view)."""
        if (
            self.reason is None
            and self.end is not None
            and self.margin > 0
            and time.time() > self.end - self.margin
        ):
            self.reason = f"less than {self.margin:g} s of wall time left"
        return self.reason is not None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}
