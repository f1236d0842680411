"""The reference pages, written from the code at every build (mkdocs-gen-files runs this).

Configuration keys from the pydantic models (`recspark/config.py`, each field's docstring), the
command line from its argparse parser (`recspark/cli.py`), table schemas from `recspark/schemas.py`
(with the comments beside their fields), exit codes (`recspark/exit_codes.py`, the advice of
`recspark/failures.py`), quarantine reasons (`recspark/etl/clean.py`), the import layers and the
pinned dependencies (`pyproject.toml`), and one API page per module (mkdocstrings). Nothing here
is written by hand twice: a name the code gains or loses without its description here stops the
build.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import io
import sys
import tokenize
import tomllib
import types
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import mkdocs_gen_files
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recspark import cli, config, exit_codes, schemas  # noqa: E402
from recspark.etl import clean  # noqa: E402

GENERATED = (
    '!!! note "Generated"\n    This page is written from `{source}` at every build of the '
    "documentation, so it cannot drift from the code.\n\n"
)


class DocsError(RuntimeError):
    """The code gained or lost something this generator has no description for."""


def cell(text: object) -> str:
    """One table cell: whitespace collapsed, pipes escaped."""
    if text is None:
        return ""
    return " ".join(str(text).split()).replace("|", "\\|")


def write(path: str, text: str, source: str) -> None:
    with mkdocs_gen_files.open(path, "w") as page:
        page.write(text)
    mkdocs_gen_files.set_edit_path(path, source)


# -- configuration ------------------------------------------------------------------------------
def _constraints(metadata: Iterable[Any]) -> list[str]:
    words = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "at least"}
    out = []
    for item in metadata:
        if isinstance(item, FieldInfo):  # `Annotated[float, Field(ge=0.0)]` inside a union
            out += _constraints(item.metadata)
            continue
        for attr, word in words.items():
            value = getattr(item, attr, None)
            if value is not None:
                out.append(f"{word} {value}" + (" entries" if attr == "min_length" else ""))
        if getattr(getattr(item, "func", None), "__name__", "") == "_identifier":
            out.append("lower-case SQL identifier")
    return out


def type_name(annotation: Any) -> str:
    """A field's type in words: `integer (≥ 1) or null`, `one of "csv", "tsv"`, ..."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Annotated:
        base, *metadata = args
        rules = _constraints(metadata)
        return type_name(base) + (f" ({', '.join(rules)})" if rules else "")
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation in names:
        return names[annotation]
    raise DocsError(f"no words for the type {annotation!r}: add them to docs/gen_ref_pages.py")


def yaml_value(value: Any) -> str:
    """A default as it would be written in conf/*.yaml."""
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_none=True)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def _field_annotation(field: Any) -> Any:
    """The annotation with its top-level constraints put back (pydantic moves them apart)."""
    if field.metadata:
        return typing.Annotated[(field.annotation, *field.metadata)]
    return field.annotation


def _section_rows(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        if name in ("project_root", "env"):
            continue
        annotation = field.annotation
        key = f"{prefix}{name}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            anchor = _anchor(key if annotation is not config.CheckThresholds else "thresholds")
            default = f"[section](#{anchor})"
            if annotation is config.CheckThresholds:
                default = f"`{yaml_value(field.default)}` ([thresholds](#{anchor}))"
            kind = "thresholds" if annotation is config.CheckThresholds else "section"
            yield f"| `{key}` | {kind} | {default} | {cell(field.description)} |"
            continue
        kind = type_name(_field_annotation(field))
        yield f"| `{key}` | {cell(kind)} | `{cell(yaml_value(field.default))}` | " + (
            f"{cell(field.description)} |"
        )


def _anchor(key: str) -> str:
    return "config-" + key.replace(".", "-").replace("_", "-")


def _sections(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, type[BaseModel]]]:
    """(dotted name, model) of every section under `model`, depth first; the monitoring checks'
    thresholds once."""
    seen = {config.CheckThresholds}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                continue
            yield f"{prefix}{name}", annotation
            yield from _sections(annotation, f"{prefix}{name}.")


CONFIG_INTRO = """# Configuration

Every path, table name, hyper-parameter and Spark setting is a key below. `conf/base.yaml` holds
these defaults (with the same explanations as comments; `tests/test_config_defaults.py` fails on
any key whose value there differs from the default here), an environment overlay
(`conf/local.yaml`, `conf/test.yaml`, your `conf/prod.yaml`) is merged on top, and
`--set key.path=value` on the command line goes last. Loading is strict and typed: an unknown key,
a wrong type or a value out of range is an error naming the key and the file or override it came
from (exit code 2). Relative paths resolve against `paths.root`, itself relative to the project
root (the folder holding `conf/`). In YAML, `null` is none.

"""


def config_page() -> str:
    out = [CONFIG_INTRO, GENERATED.format(source="recspark/config.py")]
    for dotted, model in _sections(config.Config):
        parent, _, name = dotted.rpartition(".")
        owner: type[BaseModel] = config.Config
        for part in filter(None, parent.split(".")):
            owner = owner.model_fields[part].annotation  # type: ignore[assignment]
        level = "#" * min(2 + dotted.count("."), 4)
        out.append(f"{level} `{dotted}` {{#{_anchor(dotted)}}}\n\n")
        out.append(f"{cell(owner.model_fields[name].description)}\n\n")
        out.append("| key | type | default | description |\n|---|---|---|---|\n")
        out.extend(row + "\n" for row in _section_rows(model, f"{dotted}."))
        out.append("\n")
        if model is config.ChecksConfig:
            out.append(_thresholds(f"{dotted}.*."))
    return "".join(out)


def _thresholds(prefix: str) -> str:
    return (
        f"#### Thresholds of each check {{#{_anchor('thresholds')}}}\n\n"
        f"{cell(config.CheckThresholds.__doc__)}\n\n"
        "| key | type | default | description |\n|---|---|---|---|\n"
        + "".join(row + "\n" for row in _section_rows(config.CheckThresholds, prefix))
        + "\n"
    )


# -- command line -------------------------------------------------------------------------------
def _default(action: argparse.Action) -> str:
    if action.required or isinstance(action, argparse._StoreTrueAction):
        return ""
    if isinstance(action.default, dt.date):
        return "today"
    if action.default in (None, [], argparse.SUPPRESS):
        return ""
    return f"`{action.default}`"


def _options(parser: argparse.ArgumentParser) -> str:
    rows = ["| option | default | description |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        flags = ", ".join(action.option_strings)
        if action.nargs != 0:
            flags += f" {action.metavar or action.dest.upper()}"
        help_text = action.help or ""
        if action.choices is not None:
            help_text += " Choices: " + ", ".join(f"`{c}`" for c in action.choices) + "."
        if action.required:
            help_text += " Required."
        rows.append(f"| `{cell(flags)}` | {_default(action)} | {cell(help_text)} |")
    return "\n".join(rows) + "\n"


def cli_page() -> str:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summary = {a.dest: a.help for a in commands._choices_actions}
    out = [
        "# Command line\n\n",
        GENERATED.format(source="recspark/cli.py"),
        f"{parser.description}\n\n",
        "`recspark COMMAND ...`, `python -m recspark COMMAND ...` and the jobs under `jobs/` "
        "(`spark-submit jobs/<stage>.py --conf conf --env ENV --run-date D`) take the same "
        "options. On an expected failure a command prints one line and ends with one of the "
        "[exit codes](exit-codes.md).\n\n",
        "| command | what it does |\n|---|---|\n",
    ]
    out += [f"| [`{name}`](#{name}) | {cell(summary[name])} |\n" for name in commands.choices]
    for name, sub in commands.choices.items():
        usage = " ".join(sub.format_usage().split()).removeprefix("usage: ")
        out.append(f"\n## `recspark {name}` {{#{name}}}\n\n{sub.description}\n\n")
        out.append(f"```\n{usage}\n```\n\n{_options(sub)}")
    return "".join(out)


# -- exit codes ---------------------------------------------------------------------------------
def _advice() -> dict[str, list[tuple[str, str]]]:
    """Exit-code constant -> [(exception classes, what to do)], read from recspark/failures.py
    without importing it (it imports every stage)."""
    tree = ast.parse((ROOT / "recspark/failures.py").read_text())
    advice: dict[str, list[tuple[str, str]]] = {}
    for node in ast.walk(tree):
        target = getattr(node, "target", None) or next(iter(getattr(node, "targets", [])), None)
        name = getattr(target, "id", "")
        if name == "_KNOWN" and isinstance(node.value, ast.List):  # type: ignore[attr-defined]
            for entry in node.value.elts:  # type: ignore[attr-defined]
                classes, code, hint = entry.elts
                names = ", ".join(f"`{c.id}`" for c in classes.elts)
                advice.setdefault(code.attr, []).append((names, hint.value))
        if name == "_CONFLICT_HINT":
            hint = ast.literal_eval(node.value)  # type: ignore[attr-defined]
            advice.setdefault("CONFLICT", []).append(("Delta's concurrent-write exceptions", hint))
    return advice


def exit_codes_page() -> str:
    by_value = {
        value: name
        for name, value in vars(exit_codes).items()
        if name.isupper() and isinstance(value, int)
    }
    advice = _advice()
    rows = ["| exit | meaning | raised as | what to do |", "|---|---|---|---|"]
    rows.append("| 0 | success | | |")
    for code, meaning in exit_codes.EXIT_CODES.items():
        found = advice.get(by_value[code], [("", "")])
        raised = "; ".join(c for c, _ in found if c)
        todo = "; ".join(h for _, h in found if h)
        rows.append(f"| {code} | {cell(meaning)} | {cell(raised)} | {cell(todo)} |")
    return (
        "# Exit codes\n\n"
        + GENERATED.format(source="recspark/exit_codes.py")
        + "An expected failure stops the command with one line on stderr, `recspark: stage S (D): "
        "<what failed> (<what to do>; exit N)`, and the code below (`recspark --help` lists them "
        "too). Anything else is a bug: Python's traceback and exit code 1. What the operator "
        "sees for each, and what to do, is in "
        "[Operations: failure modes](../guides/operations.md#failure-modes).\n\n"
        + "\n".join(rows)
        + "\n"
    )


# -- tables -------------------------------------------------------------------------------------
# Tables whose schema is not one constant of recspark/schemas.py (their columns follow the
# configuration); every other table key of `tables` must have one (TABLE_KEY.upper() or below).
SCHEMA_OF = {
    "user_ids": "ID_MAP_USERS",
    "item_ids": "ID_MAP_ITEMS",
    "recommendations_latest": "RECOMMENDATIONS",
    "recommendations_staging": "RECOMMENDATIONS",
}
BUILT_BY_FEATURIZE = {
    "user_features": (
        "`user_id`, `n_events`, `n_<type>_<w>d` (events of each type in the last w days, for "
        "`features.windows_days`), `n_items`, `first_ts`, `last_ts`, `recency_days`, "
        "`rating_mean`, `rating_mean_norm` (minus the global mean), `is_below_min_interactions`, "
        "`user_index`, `run_date` (`recspark/features/profiles.py`)"
    ),
    "item_features": (
        "`item_id`, `n_events`, `n_users`, `n_users_<w>d` (popularity per window), `last_ts`, "
        "`recency_days`, the item catalog's columns (e.g. `category`), "
        "`is_below_min_interactions`, `item_index`, `run_date` (`recspark/features/profiles.py`)"
    ),
    "user_sequences": (
        "`user_index`, `item_seq` array<int> (the last `features.sequence_length` train items, "
        "oldest first), `ts_seq` array<timestamp>, `seq_len`, `run_date` "
        "(`recspark/features/sequences.py`)"
    ),
}


def _comments(source: str) -> tuple[dict[int, str], dict[int, str]]:
    """(line number -> a comment alone on its line, line number -> a comment after code)."""
    alone: dict[int, str] = {}
    after: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").strip()
            (alone if token.line.lstrip().startswith("#") else after)[token.start[0]] = text
    return alone, after


def _schema_notes() -> dict[str, tuple[str, list[str]]]:
    """Schema constant -> (the comment above it, the comment beside or above each field)."""
    source = (ROOT / "recspark/schemas.py").read_text()
    comments, beside = _comments(source)
    notes: dict[str, tuple[str, list[str]]] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        name = node.targets[0].id  # type: ignore[attr-defined]
        above = []
        line = node.lineno - 1
        while line in comments:
            above.insert(0, comments[line])
            line -= 1
        fields = []
        for call in ast.walk(node.value):
            if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "StructField":
                note = [beside.get(call.end_lineno or call.lineno, "")]
                line = call.lineno - 1
                while line in comments:
                    note.insert(0, comments[line])
                    line -= 1
                fields.append(" ".join(n for n in note if n))
        notes[name] = (" ".join(above), fields)
    return notes


def _schema_table(schema: Any, field_notes: list[str]) -> str:
    rows = ["| column | type | nullable | notes |", "|---|---|---|---|"]
    for field, note in zip(schema.fields, field_notes, strict=True):
        nullable = "yes" if field.nullable else "no"
        rows.append(
            f"| `{field.name}` | `{field.dataType.simpleString()}` | {nullable} | {cell(note)} |"
        )
    return "\n".join(rows) + "\n"


TABLES_INTRO = """# Tables

All are Delta tables under `<paths.lakehouse>/<name>` (names from `tables.*` in the
[configuration](configuration.md#config-tables)), and each is also `<catalog.database>.<name>` in
the Spark catalog (`recspark.recommendations_latest`). `interactions` is partitioned by
`event_date` and written by MERGE on the event key; `pipeline_runs`, `run_health`,
`forget_requests`, `fresh_recommendations` and `refresh_batches` are appended; the id maps are
replaced whole; every other table is partitioned by `run_date` and written with `replaceWhere` on
that date: a rerun of a date replaces its partition in one commit (no duplicates, never
half-written). How to read them: the [analyst guide](../guides/analysts.md).

"""


def tables_page() -> str:
    notes = _schema_notes()
    constants = {n for n, v in vars(schemas).items() if type(v).__name__ == "StructType"}
    used: set[str] = set()
    out = [TABLES_INTRO, GENERATED.format(source="recspark/schemas.py")]
    for key, field in config.TablesConfig.model_fields.items():
        out.append(f"## `{key}`\n\n{cell(field.description)}\n\n")
        if key in BUILT_BY_FEATURIZE:
            out.append(f"Columns built by featurize: {BUILT_BY_FEATURIZE[key]}.\n\n")
            continue
        constant = SCHEMA_OF.get(key, key.upper())
        if constant not in constants:
            raise DocsError(f"table {key}: no schema {constant} in recspark/schemas.py")
        used.add(constant)
        if constant in SCHEMA_OF.values() and constant != key.upper():
            out.append(f"Schema `schemas.{constant}`.\n\n")
        table_note, field_notes = notes.get(constant, ("", []))
        if not field_notes:  # an alias (HOLDOUT = TRAIN_INTERACTIONS): the aliased one's notes
            source = ast.parse((ROOT / "recspark/schemas.py").read_text())
            alias = next(
                n.value.id  # type: ignore[attr-defined]
                for n in source.body
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == constant
            )
            table_note, field_notes = notes[alias]
        if table_note:
            out.append(f"{table_note}\n\n")
        out.append(_schema_table(getattr(schemas, constant), field_notes) + "\n")
    unused = sorted(constants - used)
    if unused:
        raise DocsError(f"schemas {unused} belong to no table key of `tables`")
    return "".join(out)


# -- quarantine reasons -------------------------------------------------------------------------
# What each reason of recspark.etl.clean.REASONS means; the build stops when the two differ.
REASON_MEANS = {
    "malformed_record": "too few or too many fields, an unclosed quote, broken JSON, a Kafka "
    "message that does not parse: the raw line is kept in `raw_record`",
    "null_key": "the user, item, event type or time is missing or blank",
    "control_character": "a user or item id holds a control character (NUL, ESC, BEL, CR, DEL, "
    "the C1 controls, ...)",
    "invalid_utf8": "a user or item id with bytes that are not UTF-8 (Spark's reader has turned "
    "them into U+FFFD, so the quarantined text no longer holds the original bytes)",
    "invisible_character": "a user or item id holds a character that shows as nothing or as a "
    "plain space, so that it looks exactly like another id: a Unicode format character "
    "(category Cf: zero-width space, word joiner, soft hyphen, BOM, bidi marks), a space other "
    "than the ASCII one, the line and paragraph separators. The zero-width joiner and non-joiner "
    "are allowed between two visible non-ASCII characters (emoji sequences, Persian and Indic "
    "words)",
    "id_too_long": "a user or item id longer than `ingest.max_id_length` characters",
    "bad_timestamp": "the time does not parse with `source.timestamp_format`",
    "future_timestamp": "after the end of the run date plus `ingest.future_tolerance_s`",
    "too_old": "before `ingest.min_timestamp`",
    "unknown_event_type": "not a key of `ingest.event_weights`",
    "bad_value": "the value is not a number, not finite (`NaN`, `Infinity`), negative, or above "
    "`ingest.max_value`",
    "rating_out_of_range": "a rating outside [`ingest.rating_min`, `ingest.rating_max`] or missing",
    "unknown_item": "not in the item catalog (only when `source.item_catalog` is set)",
    "duplicate": "an exact repeat of a clean event; the copy from the first file by name is kept",
    "near_duplicate": "the same user, item and event type within "
    "`ingest.near_duplicate_window_s` seconds of the previous one (double clicks, retries)",
    "bot_like_user": "all of a user's events on a day with more than "
    "`ingest.max_events_per_user_day` clean events",
}


def quarantine_page() -> str:
    if set(clean.REASONS) != set(REASON_MEANS):
        raise DocsError(
            "quarantine reasons changed: describe "
            f"{sorted(set(clean.REASONS) - set(REASON_MEANS))} and drop "
            f"{sorted(set(REASON_MEANS) - set(clean.REASONS))} in docs/gen_ref_pages.py"
        )
    rows = ["| order | reason | the row is quarantined when |", "|---|---|---|"]
    rows += [
        f"| {n} | `{reason}` | {cell(REASON_MEANS[reason])} |"
        for n, reason in enumerate(clean.REASONS, 1)
    ]
    return (
        "# Quarantine reasons\n\n"
        + GENERATED.format(source="recspark/etl/clean.py")
        + "Every input row ends in `interactions` or in `interactions_quarantine` with exactly "
        "one `reason`: the first that applies, in the order below (the order of the checks in "
        "`recspark/etl/clean.py`). The ingest stage counts rows in, clean and quarantined, and "
        "refuses to write anything if rows in ≠ clean + quarantined; `pipeline_runs` keeps the "
        "counts of every run (`quarantined_by_reason`). A clean event already in "
        "`interactions` (a rerun, a repeat across days) is counted clean and `already_present`, "
        "not inserted again. Users and items with little history are not dropped: they are "
        "marked `is_below_min_interactions` in `user_features` / `item_features`. The settings "
        "named here are in the [configuration reference](configuration.md#config-ingest).\n\n"
        + "\n".join(rows)
        + "\n"
    )


# -- import layers and pinned dependencies (pyproject.toml) -------------------------------------
def layers_page() -> str:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    out = [
        "# Import layers\n\n",
        GENERATED.format(source="pyproject.toml"),
        "The contracts `make lint` checks with import-linter (`[tool.importlinter]` in "
        "`pyproject.toml`); a change that breaks one fails CI. Why the package is layered: "
        "[Design: layers](../design/layers.md).\n\n",
    ]
    for contract in contracts["contracts"]:
        out.append(f"## {contract['name']}\n\n")
        if contract["type"] == "layers":
            out.append("From the top; `|` separates independent siblings.\n\n")
            out += [f"{n}. `{layer}`\n" for n, layer in enumerate(contract["layers"], 1)]
        elif contract["type"] == "forbidden":
            sources = ", ".join(f"`{m}`" for m in contract["source_modules"])
            banned = ", ".join(f"`{m}`" for m in contract["forbidden_modules"])
            out.append(f"{sources} may not import {banned}.\n")
        else:
            ancestors = ", ".join(f"`{m}`" for m in contract.get("ancestors", []))
            out.append(f"Contract type `{contract['type']}` over {ancestors}.\n")
        out.append("\n")
    return "".join(out)


def _pins(lines: list[str], start: str) -> Iterator[tuple[str, str]]:
    """(requirement, the comment lines just above it) of the list opened by the line `start`."""
    comment: list[str] = []
    inside = False
    for line in lines:
        text = line.strip()
        if text == start:
            inside = True
        elif inside and text == "]":
            return
        elif inside and text.startswith("#"):
            comment.append(text.lstrip("#").strip())
        elif inside and text.startswith('"'):
            yield text.rstrip(",").strip('"'), " ".join(comment)
            comment = []


def dependencies_page() -> str:
    lines = (ROOT / "pyproject.toml").read_text().splitlines()
    extras = tomllib.loads("\n".join(lines))["project"]["optional-dependencies"]
    out = [
        "# Dependencies\n\n",
        GENERATED.format(source="pyproject.toml"),
        "The pinned set and the reason for each pin, from the comments beside them in "
        "`pyproject.toml`. Why these only work together on one window of versions: "
        "[Design: pins](../design/pins.md).\n\n",
    ]
    groups = [("Runtime (`dependencies`)", "dependencies = [")]
    groups += [(f"Extra `{name}`", f"{name} = [") for name in extras]
    for title, start in groups:
        out.append(f"## {title}\n\n| requirement | why |\n|---|---|\n")
        out += [f"| `{cell(req)}` | {cell(why)} |\n" for req, why in _pins(lines, start)]
        out.append("\n")
    return "".join(out)


# -- Python API (mkdocstrings) ------------------------------------------------------------------
def api_pages() -> None:
    """One page per module of recspark, and the section's navigation (mkdocs-literate-nav)."""
    nav = mkdocs_gen_files.Nav()
    for path in sorted((ROOT / "recspark").rglob("*.py")):
        module = path.relative_to(ROOT).with_suffix("")
        parts = tuple(module.parts)
        page = module.with_suffix(".md")
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
            page = page.with_name("index.md")
        nav[parts] = page.as_posix()
        write(f"reference/api/{page.as_posix()}", f"::: {'.'.join(parts)}\n", str(path))
    with mkdocs_gen_files.open("reference/api/SUMMARY.md", "w") as summary:
        summary.writelines(nav.build_literate_nav())


def main() -> None:
    write("reference/configuration.md", config_page(), "recspark/config.py")
    write("reference/cli.md", cli_page(), "recspark/cli.py")
    write("reference/tables.md", tables_page(), "recspark/schemas.py")
    write("reference/exit-codes.md", exit_codes_page(), "recspark/exit_codes.py")
    write("reference/quarantine-reasons.md", quarantine_page(), "recspark/etl/clean.py")
    write("reference/import-layers.md", layers_page(), "pyproject.toml")
    write("reference/dependencies.md", dependencies_page(), "pyproject.toml")
    api_pages()


main()
