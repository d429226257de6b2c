"""The four CLIs follow docs/cli.md: --version, -q/--quiet and --debug on every subcommand, -o/--output where one
writes, and the same exit statuses on bad input (2, one line, no traceback) and on bugs (1)."""

from __future__ import annotations

import importlib

import pytest

CLIS = {
    "tea-align": "tea_align.cli",
    "allegro-fm": "allegro_fm_model.cli",
    "allegro-fm-md": "allegro_fm_md.cli",
    "allegro-fm-bench": "allegro_fm_bench.cli",
}
#: every subcommand, as docs/cli.md lists them
SUBCOMMANDS = {
    "tea-align": ["fit", "apply", "convert", "inspect", "report", "demo"],
    "allegro-fm": ["train", "finetune", "evaluate", "export", "params"],
    "allegro-fm-md": ["run", "rdf", "merge", "scale"],
    "allegro-fm-bench": ["run", "make-mini-data", "peer-errors"],
}
#: subcommands that write a file or folder (they take -o/--output)
WRITERS = {
    "tea-align": {"fit", "apply", "convert", "report", "demo"},
    "allegro-fm": {"evaluate", "export"},
    "allegro-fm-md": {"run", "rdf", "merge", "scale"},
    "allegro-fm-bench": {"run", "make-mini-data", "peer-errors"},
}
#: one bad-input call per CLI: a file that does not exist
BAD = {
    "tea-align": ["inspect", "/nonexistent/data.extxyz"],
    "allegro-fm": ["evaluate", "/nonexistent/model.pt", "x.h5"],
    "allegro-fm-md": ["run", "/nonexistent/run.toml"],
    "allegro-fm-bench": ["run", "params", "--model", "/nonexistent.pt"],
}


@pytest.mark.parametrize("prog", CLIS)
def test_version_and_common_flags(prog, capsys):
    main = importlib.import_module(CLIS[prog]).main
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith(f"{prog} ")
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    for name in SUBCOMMANDS[prog]:
        assert f"    {name} " in top or f"    {name}\n" in top, (
            f"{prog}: {name} missing from --help"
        )
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        assert "-q, --quiet" in text and "--debug" in text, f"{prog} {name}"
        assert ("-o OUTPUT, --output OUTPUT" in text) == (name in WRITERS[prog]), (
            f"{prog} {name}: -o/--output"
        )


@pytest.mark.parametrize("prog", CLIS)
def test_bad_input_is_exit_2_with_one_line(prog, capsys):
    main = importlib.import_module(CLIS[prog]).main
    assert main([*BAD[prog], "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{prog}: error: ") and "nonexistent" in err[0], err
    assert "Traceback" not in "\n".join(err)


def test_a_bug_is_exit_1_not_bad_input(monkeypatch, capsys):
    """An unexpected exception inside a command is an internal error (1), named as such, with --debug for the traceback."""
    import tea_align.cli as cli

    def boom(args):
        raise KeyError("a programming error")

    monkeypatch.setattr(cli, "cmd_inspect", boom)
    assert cli.main(["inspect", "x.extxyz"]) == 1
    err = capsys.readouterr().err
    assert (
        "tea-align: internal error: KeyError" in err and "--debug" in err and "Traceback" not in err
    )
    assert cli.main(["inspect", "x.extxyz", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_interrupt_is_exit_130(monkeypatch, capsys):
    import allegro_fm_md.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_rdf", interrupted)
    assert cli.main(["rdf", "t.h5"]) == 130
    assert "allegro-fm-md: interrupted" in capsys.readouterr().err
