"""Expected operational failures: one line naming the problem and what to do, a documented exit
code, no traceback (unless --debug). Each failure is provoked for real: an empty lakehouse, an
empty landing folder, a corrupted Delta log, a port nobody listens on, a real Delta conflict."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from recspark import exit_codes
from recspark.cli import main
from recspark.config import ConfigError, load_config
from recspark.failures import classify, one_line

from .conftest import CONF_DIR, RUN_DATE

DATE = RUN_DATE.isoformat()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(
    root: Path, capsys: pytest.CaptureFixture[str], *argv: str, debug: bool = False
) -> tuple[int, str]:
    """`recspark ARGV` in this process (its Spark session is the tests' one): (code, stderr)."""
    common = ["--conf", str(CONF_DIR), "--env", "test", "--set", f"paths.root={root}"]
    common += ["--set", "catalog.enabled=false"] + (["--debug"] if debug else [])
    capsys.readouterr()
    code = main([*argv, *common])
    return code, capsys.readouterr().err


def _the_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.startswith("recspark: ")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_stages_on_an_empty_lakehouse_name_the_missing_table_or_model(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _cli(tmp_path, capsys, "run", "--stage", "featurize", "--run-date", DATE)
    assert code == exit_codes.TABLE
    line = _the_line(err)
    assert f"stage featurize ({DATE})" in line and "interactions" in line, line
    # The first night's gate refused the model: score has no champion to score with.
    code, err = _cli(tmp_path, capsys, "run", "--stage", "score", "--run-date", DATE)
    assert code == exit_codes.NO_MODEL
    line = _the_line(err)
    assert "champion" in line and "recspark promote --version N" in line, line
    # --debug: the exception itself.
    with pytest.raises(LookupError, match="champion"):
        _cli(tmp_path, capsys, "run", "--stage", "score", "--run-date", DATE, debug=True)


def test_a_landing_folder_without_files_is_an_input_error(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing = tmp_path / "landing" / DATE
    landing.mkdir(parents=True)
    (landing / "_SUCCESS").write_text("")
    (landing / ".part-0.csv.crc").write_text("x")
    code, err = _cli(
        tmp_path,
        capsys,
        *("run", "--stage", "ingest", "--run-date", DATE),
        *("--set", f"source.path={tmp_path}/landing/{{run_date}}"),
    )
    assert code == exit_codes.INPUT
    line = _the_line(err)
    assert str(landing) in line and "no data files" in line, line


def test_a_corrupted_delta_log_is_an_unreadable_table(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(CONF_DIR, "test", [f"paths.root={tmp_path}"])
    table = Path(config.table_path("interactions"))
    spark.range(3).write.format("delta").save(str(table))
    # A damaged newest commit (a torn write, a bad copy): the log cannot be replayed.
    (table / "_delta_log" / "00000000000000000001.json").write_text('{"add": {"path": \n')
    code, err = _cli(tmp_path, capsys, "run", "--stage", "featurize", "--run-date", DATE)
    assert code == exit_codes.TABLE, err
    line = _the_line(err)
    assert "cannot be read" in line and str(table) in line, line


def test_an_unreachable_tracking_server_is_one_line_and_exit_6(tmp_path: Path) -> None:
    """A real process, as an operator runs it: MLflow's client would retry for minutes. The
    URI's password is not printed."""
    port = _free_port()
    uri, password = f"http://mlflow:***@127.0.0.1:{port}", "tracking-Pa55word"
    argv = [sys.executable, "-m", "recspark", "promote", "--version", "1", "--conf", str(CONF_DIR)]
    argv += ["--env", "test", "--set", f"paths.root={tmp_path}"]
    argv += ["--set", f"mlflow.tracking_uri={uri.replace('***', password)}"]
    env = {k: v for k, v in os.environ.items() if k != "RECSPARK_DEBUG"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == exit_codes.TRACKING, done.stderr
    line = _the_line(done.stderr)
    assert uri in line and "mlflow.tracking_uri" in line, line
    assert password not in done.stdout + done.stderr
    debug = subprocess.run([*argv, "--debug"], capture_output=True, text=True, timeout=120, env=env)
    assert debug.returncode == 1 and "TrackingUnreachableError" in debug.stderr
    assert password not in debug.stdout + debug.stderr


def test_a_real_delta_write_conflict_is_classified(spark: SparkSession, tmp_path: Path) -> None:
    """Two writers of one table: a transaction that read the table loses to an overwrite
    committed meanwhile (what two runs of the same date do)."""
    path = str(tmp_path / "t")
    spark.range(10).write.format("delta").save(path)
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    delta = jvm.org.apache.spark.sql.delta
    txn = delta.DeltaLog.forTable(spark._jsparkSession, path).startTransaction()
    txn.filterFiles()  # this transaction read every file
    spark.range(5).write.format("delta").mode("overwrite").save(path)  # the other run
    nothing = getattr(getattr(jvm.scala.collection.immutable, "Nil$"), "MODULE$")
    operation = getattr(getattr(delta, "DeltaOperations$ManualUpdate$"), "MODULE$")
    with pytest.raises(Exception) as raised:
        txn.commit(nothing, operation)
    failure = classify(raised.value)
    assert failure is not None and failure.code == exit_codes.CONFLICT
    raised.value.add_note(f"stage featurize ({DATE})")
    line = one_line(raised.value, failure)
    assert line.startswith(f"recspark: stage featurize ({DATE}): Delta write conflict")
    assert "\n" not in line and "rerun this stage" in line


def test_every_exit_code_has_its_failures_and_anything_else_is_a_bug() -> None:
    from recspark.etl.ingest import AccountingError
    from recspark.health import HealthCheckError
    from recspark.io.delta import MissingTableError
    from recspark.io.sources import SourceError
    from recspark.online.export import OnlineExportError
    from recspark.scoring.publish import ValidationError
    from recspark.tracking import NoModelError, TrackingUnreachableError
    from recspark.training.launch import TrainingError

    examples: dict[int, BaseException] = {
        exit_codes.USAGE: ConfigError("train.epochs: not a number"),
        exit_codes.INPUT: SourceError("source.path: /x does not exist"),
        exit_codes.TABLE: MissingTableError("no Delta table at /x"),
        exit_codes.NO_MODEL: NoModelError("no champion"),
        exit_codes.TRACKING: TrackingUnreachableError("http://x"),
        exit_codes.TRAINING: TrainingError("training diverged"),
        exit_codes.VALIDATION: ValidationError(RUN_DATE, ["no rows"]),
        exit_codes.ONLINE_STORE: OnlineExportError("redis down"),
        exit_codes.HEALTH: HealthCheckError("rows_in[all] = 300: ratio 0.3 < fail_below 0.4"),
    }
    assert classify(AccountingError("3 rows unaccounted")) is not None
    named = {code for code, exc in examples.items() if (f := classify(exc)) and f.code == code}
    conflict = exit_codes.CONFLICT  # by a real conflict, above
    assert named | {exit_codes.BUG, conflict} == set(exit_codes.EXIT_CODES)
    for bug in (KeyError("x"), ZeroDivisionError(), RuntimeError("boom"), ValueError("v")):
        assert classify(bug) is None


def test_a_failure_while_recording_a_failure_keeps_the_first_error_first(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stage fails and pipeline_runs cannot take its row (here a file stands where the table
    belongs, as a full disk or lost permissions would refuse the write): the stage's own error
    is the line and the exit code, the recording failure a note after it."""
    config = load_config(CONF_DIR, "test", [f"paths.root={tmp_path}"])
    runs = Path(config.table_path("pipeline_runs"))
    runs.parent.mkdir(parents=True)
    runs.write_text("not a table")
    code, err = _cli(tmp_path, capsys, "run", "--stage", "featurize", "--run-date", DATE)
    assert code == exit_codes.TABLE, err
    line = _the_line(err)
    assert f"stage featurize ({DATE})" in line and "interactions" in line, line
    lines = err.splitlines()
    note = lines[lines.index(line) + 1]
    assert note.startswith("  note: recording this failure in pipeline_runs failed too: "), err


def test_an_unreachable_store_with_a_password_in_its_url_is_named_without_it(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The export stage's failure line and the error kept in pipeline_runs name the store by
    its URL with the password replaced by ***."""
    import datetime as dt

    from recspark.io.delta import read_table

    password, port = "export-Pa55word", _free_port()
    config = load_config(CONF_DIR, "test", [f"paths.root={tmp_path}"])
    published = [("run-1", dt.date(2026, 1, 1), "3")]  # what export reads before the store
    spark.createDataFrame(
        published, "run_id string, run_date date, model_version string"
    ).write.format("delta").save(config.table_path("recommendations_latest"))
    url = f"redis://app:{password}@127.0.0.1:{port}/0"  # nothing listens there
    code, err = _cli(
        tmp_path,
        capsys,
        *("run", "--stage", "export", "--run-date", DATE),
        *("--set", "online.store=redis", "--set", f"online.redis_url={url}"),
    )
    assert code == exit_codes.ONLINE_STORE, err
    line = _the_line(err)
    assert f"cannot reach redis://app:***@127.0.0.1:{port}/0" in line, line
    assert password not in err
    runs = read_table(spark, config.table_path("pipeline_runs")).collect()
    assert [r["status"] for r in runs] == ["failed"]
    assert "cannot reach redis://app:***@" in runs[0]["details"]
    assert password not in runs[0]["details"]
