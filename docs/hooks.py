"""mkdocs hooks: the command-line and run-file references, generated from the code at build time (the argparse parsers
of the four commands; the run-file dataclasses, their ranges and the registered integrator kinds), so that the code
is their one source. Nothing is written into docs/: the pages are added to the build as generated files."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import typing

from mkdocs.structure.files import File

COMMANDS = (
    ("tea-align", "tea_align.cli"),
    ("allegro-fm", "allegro_fm_model.cli"),
    ("allegro-fm-md", "allegro_fm_md.cli"),
    ("allegro-fm-bench", "allegro_fm_bench.cli"),
)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _options(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | default | meaning |", "|---|---|---|"]
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = ", ".join(f"`{o}`" for o in a.option_strings) or f"`{a.dest}`"
        default = (
            ""
            if a.default in (None, argparse.SUPPRESS, False) or not a.option_strings
            else f"`{a.default}`"
        )
        rows.append(f"| {name} | {_cell(default)} | {_cell(a.help or '')} |")
    return rows


def cli_reference() -> str:
    """Markdown: every command, subcommand and option, from ``build_parser()`` of each package's cli module."""
    import importlib

    out = [
        "# Command line",
        "",
        "Generated from the commands' own parsers (`build_parser()` in each package's "
        "`cli.py`); conventions and exit statuses: [CLI conventions](../cli.md).",
        "",
    ]
    for prog, module in COMMANDS:
        ap = importlib.import_module(module).build_parser()
        out += [f"## `{prog}`", "", _cell(ap.description or ""), ""]
        sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
        helps = {c.dest: c.help for c in sub._choices_actions}
        for name, p in sub.choices.items():
            out += [
                f"### `{prog} {name}`",
                "",
                _cell(helps.get(name, "")),
                "",
                "```text",
                p.format_usage().strip(),
                "```",
                "",
            ]
            out += _options(p) + [""]
    return "\n".join(out)


def _field_docs(klass) -> dict[str, str]:
    """Each field's ``#:`` comment (the lines right above it in the class body)."""
    docs, pending = {}, []
    for line in inspect.getsource(klass).splitlines():
        s = line.strip()
        if s.startswith("#:"):
            pending.append(s[2:].strip())
            continue
        name = (
            s.split(":", 1)[0].strip()
            if ":" in s and not s.startswith(("#", '"', "def ", "@"))
            else ""
        )
        if name.isidentifier() and pending:
            docs[name] = " ".join(pending)
        pending = []
    return docs


def _type_name(t) -> str:
    if typing.get_origin(t) is typing.Union or type(t).__name__ == "UnionType":
        return " or ".join(_type_name(a) for a in typing.get_args(t))
    return "none" if t is type(None) else getattr(t, "__name__", str(t))


def _range(lo_hi) -> str:
    if lo_hi is None:
        return ""
    lo, hi, incl = lo_hi
    parts = ([f"{'>=' if incl else '>'} {lo:g}"] if lo is not None else []) + (
        [f"<= {hi:g}"] if hi is not None else []
    )
    return ", ".join(parts)


def _table(klass, ranges: dict | None, where: str) -> list[str]:
    from allegro_fm_md.schema import field_range

    hints, docs = typing.get_type_hints(klass), _field_docs(klass)
    rows = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(klass):
        if f.default is not dataclasses.MISSING:
            default = f"`{f.default!r}`"
        elif f.default_factory is not dataclasses.MISSING:
            default = f"`{f.default_factory()!r}`"
        else:
            default = "required"
        doc = docs.get(f.name)
        if not doc:
            raise ValueError(
                f"{where} key {f.name!r} ({klass.__qualname__}) has no '#:' description in the code"
            )
        rng = _range(field_range(klass, f.name, ranges))
        rows.append(
            f"| `{f.name}` | {_type_name(hints[f.name])} | {_cell(default)} | {rng} | {_cell(doc)} |"
        )
    return rows


def runfile_reference() -> str:
    """Markdown: every key of the run file's tables and of each registered integrator kind's table."""
    from allegro_fm_md import runfile
    from allegro_fm_md.integrators import integrator_kinds

    out = [
        "# Run file",
        "",
        "The keys of an `allegro-fm-md run` TOML file, generated from the run-file dataclasses "
        "(`allegro_fm_md.runfile`), their ranges and the registered integrator kinds: what the run file accepts is "
        "exactly this (an unknown key, a wrong type or a value out of range is refused, naming the file and key). "
        "Units are in the key names and descriptions; paths are relative to the run file.",
        "",
    ]
    for table, klass in (
        ("system", runfile.SystemSpec),
        ("potential", runfile.PotentialSpec),
        ("run", runfile.RunSpec),
        ("output", runfile.OutputSpec),
    ):
        out += [f"## `[{table}]`", "", _cell(inspect.getdoc(klass) or ""), ""]
        out += _table(klass, runfile._RANGES, f"[{table}]") + [""]
    out += [
        "## Integrator kinds: `[run.KIND]`",
        "",
        "`[run] integrator` names one kind; its options go in "
        "`[run.KIND]`. Modifiers (`npt`, `deform`) wrap a thermostat when their table is present. Plug-ins "
        "register more through the `allegro_fm_md.integrators` entry-point group.",
        "",
    ]
    for name, kind in sorted(integrator_kinds().items()):
        role = "modifier" if kind.modifier else "integrator"
        out += [
            f"### `{name}` ({role})",
            "",
            _cell(kind.doc or ""),
            "",
            _cell(inspect.getdoc(kind.options) or ""),
            "",
        ]
        if dataclasses.fields(kind.options):
            out += _table(kind.options, None, f"[run.{name}]") + [""]
    return "\n".join(out)


def on_files(files, config):
    """Add the generated reference pages to the build."""
    files.append(File.generated(config, "reference/cli.md", content=cli_reference()))
    files.append(File.generated(config, "reference/run-file.md", content=runfile_reference()))
    return files
