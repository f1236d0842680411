"""The command line: help, argument and configuration errors (no Spark needed)."""

from __future__ import annotations

import pytest

from recspark.cli import build_parser, main

from .conftest import CONF_DIR


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return list(sub.choices or {})


def test_help_of_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _commands()
    assert {"run", "generate", "backfill", "rollback", "promote", "demote", "demo"} <= set(commands)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    top = capsys.readouterr().out
    for command in commands:
        assert command in top
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        help_text = capsys.readouterr().out
        assert "--conf" in help_text
        # example users (personal data) in the summary only on request
        assert ("--show-examples" in help_text) == (command in ("run", "demo"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["rollback"], "the following arguments are required: --to-run"),
        (["promote"], "the following arguments are required: --version"),
        (["backfill", "--from", "2026-01-01"], "the following arguments are required: --to"),
        (["teleport"], "invalid choice: 'teleport'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_missing_or_unknown_arguments_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_date_and_stage_are_argument_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--run-date", "2026-13-01"])
    assert exit_info.value.code == 2
    assert "not a date (YYYY-MM-DD): '2026-13-01'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--stage", "teleport"])
    assert "invalid choice: 'teleport'" in capsys.readouterr().err


def test_backfill_range_and_config_errors(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--conf", str(CONF_DIR), "--env", "test"]
    assert main(["backfill", "--from", "2026-01-05", "--to", "2026-01-01", *args]) == 2
    assert "--to 2026-01-01 is before --from 2026-01-05" in capsys.readouterr().err
    assert main(["run", *args, "--set", "train.epochs=many"]) == 2
    assert "train.epochs (from override 'train.epochs=many')" in capsys.readouterr().err
    assert main(["run", "--conf", "/nonexistent", "--env", "test"]) == 2
    assert "no such file" in capsys.readouterr().err
