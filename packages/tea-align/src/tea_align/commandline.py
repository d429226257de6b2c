"""The command-line convention of the project's four CLIs (tea-align, allegro-fm, allegro-fm-md, allegro-fm-bench),
written out in docs/cli.md: one parser shape, one set of flags, one meaning per exit status.

    parser = command_parser("allegro-fm", "...", version)     # --version
    sub = subcommands(parser)                                  # each subcommand: -q/--quiet, --debug
    p = sub.add_parser("evaluate", help=..., writes=True)      # + -o/--output (and --overwrite if asked)
    p.set_defaults(func=cmd_evaluate)
    return run(parser, argv, bad_input=(MyInputError,))

Exit statuses: 0 ok, 1 internal error (a bug: one line, the traceback with --debug), 2 bad input (one line naming
the file/atom/step), 3 a guard stopped the run, 4 a rank aborted (MPI), 75 an MD run stopped cleanly before its end
(scheduler signal or wall-time margin; restart written: resubmit), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_GUARD, EXIT_RANK_ABORTED, EXIT_INTERRUPTED = (
    0,
    1,
    2,
    3,
    4,
    130,
)
#: a run stopped cleanly before its end (SIGTERM/SIGUSR1 from the scheduler, or its wall-time margin) with a restart
#: written at the current step: resubmit to continue (EX_TEMPFAIL of sysexits.h: "try again later")
EXIT_STOPPED = 75
#: killed by SIGTERM outside a run's step loop (set-up, conversion): 128 + 15, the shell's convention
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception (``run`` installs the handler): ``finally`` blocks and the atomic writers'
    clean-up run, so a terminated command leaves no temporary file, as after Ctrl-C."""


#: signals received by ``run``'s handlers and not yet seen to stop the command (see ``raise_if_interrupted``)
_PENDING: list[int] = []


def _on_signal(signum, frame):
    """Record the signal, then raise. Python swallows an exception raised while a weakref callback or finalizer runs
    ("Exception ignored in ..."): h5py and numpy run many, and a Ctrl-C landing there used to be lost (the command ran
    to the end and exited 0). The record survives: ``raise_if_interrupted`` raises it again at the next safe point."""
    _PENDING.append(signum)
    raise (Terminated(f"signal {signum}") if signum == signal.SIGTERM else KeyboardInterrupt())


def _quiet_swallowed_interrupts(hook):
    """An unraisable-exception hook that drops the interrupts ``_on_signal`` records (they are raised again at the next
    safe point) and passes everything else to ``hook``: a stopped command prints one line, not a stray traceback."""

    def quiet(unraisable) -> None:
        if not (_PENDING and issubclass(unraisable.exc_type, KeyboardInterrupt)):
            hook(unraisable)

    return quiet


def raise_if_interrupted() -> None:
    """Raise the interrupt a signal handler could not deliver (see ``_on_signal``); called by every progress update."""
    if _PENDING:
        signum = _PENDING[-1]
        raise Terminated(f"signal {signum}") if signum == signal.SIGTERM else KeyboardInterrupt()


class GuardStop(Exception):
    """Raise from a command when a guard stopped the run (exit status 3); the message says why and where."""


def command_parser(prog: str, description: str, version: str) -> argparse.ArgumentParser:
    """The top-level parser of a CLI, with ``--version``."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--version", action="version", version=f"{prog} {version}")
    return ap


class _Subcommands:
    """``add_parser`` that gives every subcommand -q/--quiet and --debug, and -o/--output (+ --overwrite) on request."""

    def __init__(self, parser: argparse.ArgumentParser):
        self._common = argparse.ArgumentParser(add_help=False)
        self._common.add_argument(
            "-q", "--quiet", action="store_true", help="no progress bars or progress lines"
        )
        self._common.add_argument(
            "--debug", action="store_true", help="show the traceback of an error"
        )
        self._sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def add_parser(
        self,
        name: str,
        *,
        writes: bool = False,
        output_help: str = "output path",
        output_default=None,
        output_required: bool = False,
        overwrite: bool = False,
        **kw,
    ) -> argparse.ArgumentParser:
        p = self._sub.add_parser(name, parents=[self._common], **kw)
        if writes:
            p.add_argument(
                "-o", "--output", default=output_default, required=output_required, help=output_help
            )
        if overwrite:
            p.add_argument(
                "--overwrite", action="store_true", help="replace the output of an earlier run"
            )
        return p


def subcommands(parser: argparse.ArgumentParser) -> _Subcommands:
    """The subcommand table of ``parser`` (see ``_Subcommands.add_parser``)."""
    return _Subcommands(parser)


def run(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    bad_input: tuple[type[BaseException], ...] = (),
    on_error: Callable[[BaseException, argparse.Namespace], int | None] | None = None,
) -> int:
    """Parse ``argv``, call the chosen subcommand's ``func(args)`` and map what it raises to the exit statuses.

    ``bad_input``: exception types that mean bad input (exit 2, one line). ``GuardStop``: exit 3. Anything else is
    an internal error (exit 1). ``on_error`` may claim an exception first (MPI abort handling) by returning a status.
    """
    args = parser.parse_args(argv)
    prog = parser.prog
    main_thread = threading.current_thread() is threading.main_thread()
    old = {}
    hook = sys.unraisablehook
    if main_thread:
        _PENDING.clear()
        sys.unraisablehook = _quiet_swallowed_interrupts(hook)
        old[signal.SIGTERM] = signal.signal(signal.SIGTERM, _on_signal)
        if (
            signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):  # an ignored SIGINT (nohup, bash &) stays ignored
            old[signal.SIGINT] = signal.signal(signal.SIGINT, _on_signal)
    try:
        return int(args.func(args) or 0)
    except Terminated:
        print(f"{prog}: terminated (SIGTERM); partial outputs removed", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as exc:  # noqa: BLE001  (mapped to an exit status below; SystemExit passes through)
        if isinstance(exc, SystemExit):
            raise
        if on_error is not None:
            code = on_error(exc, args)
            if code is not None:
                return code
        if getattr(args, "debug", False):
            traceback.print_exc()
        if isinstance(exc, GuardStop):
            print(f"{prog}: stopped: {exc}", file=sys.stderr)
            return EXIT_GUARD
        if isinstance(exc, bad_input):
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if isinstance(
            exc, OSError
        ):  # the file system, not a bug: missing file or unwritable place (2), full disk or I/O error (1)
            where = (
                f" ({exc.filename})"
                if getattr(exc, "filename", None) and str(exc.filename) not in str(exc)
                else ""
            )
            print(f"{prog}: error: {exc}{where}", file=sys.stderr)
            return (
                EXIT_BAD_INPUT
                if isinstance(
                    exc, (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError)
                )
                else EXIT_INTERNAL
            )
        print(
            f"{prog}: internal error: {type(exc).__name__}: {exc}"
            + (
                ""
                if getattr(args, "debug", False)
                else " (a bug: rerun with --debug for the traceback and report it)"
            ),
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        sys.unraisablehook = hook
        _PENDING.clear()
