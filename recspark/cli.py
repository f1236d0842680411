"""The `recspark` command line (also `python -m recspark` and every `jobs/*.py`)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from recspark import exit_codes
from recspark.config import Config, ConfigError, load_config
from recspark.credentials import redact, remember_config
from recspark.stages import DEMO, NIGHTLY, StageName

if TYPE_CHECKING:  # the CLI starts without Spark: `--help` and config errors need no JVM
    from pyspark.sql import SparkSession

    from recspark.results import PipelineRun


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _common(parser: argparse.ArgumentParser, with_run_date: bool = True) -> None:
    parser.epilog = exit_codes.epilog()
    parser.formatter_class = _HelpFormatter
    parser.add_argument(
        "--conf",
        default="conf",
        help="folder with base.yaml and environment overlays (default: conf)",
    )
    parser.add_argument(
        "--env",
        default="local",
        help="environment overlay to apply: local, test, ... (default: local)",
    )
    if with_run_date:
        parser.add_argument(
            "--run-date",
            type=_date,
            default=dt.date.today(),
            help="the run date the stage works for, YYYY-MM-DD (default: today)",
        )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=os.environ.get("RECSPARK_DEBUG", "") not in ("", "0"),
        help="on an expected failure, show the traceback instead of the one-line message "
        "(also RECSPARK_DEBUG=1)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.epochs=3 (repeatable)",
    )


def _show_examples(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--show-examples",
        action="store_true",
        help="after the score stage's summary line, print three users' ids with their best "
        "recommendations (personal data: off by default, the summary has counts only)",
    )


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual; keeps the exit-code table's lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("exit codes:"):
            return text
        return super()._fill_text(text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recspark",
        description="Spark-based batch recommendation engine: ingest -> featurize -> train "
        "(Horovod) -> evaluate -> score, on Delta tables with an MLflow registry.",
        epilog=exit_codes.epilog(),
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run one stage or the whole pipeline for a run date",
        description="Run one stage, or all of them in order (--stage all).",
    )
    run.add_argument(
        "--stage",
        default="all",
        choices=[*NIGHTLY, "ingest_stream", "all"],
        help="the stage to run (default: all = the nightly batch stages in order; "
        "ingest_stream: the streaming ingest of stream.landing, or with stream.source kafka "
        "of stream.kafka.topic)",
    )
    _common(run)
    _show_examples(run)
    gen = sub.add_parser(
        "generate",
        help="write the seeded synthetic dataset (config section 'synthetic')",
        description="Write seeded synthetic events (with defects) and an item catalog where the "
        "ingest source reads them (paths.raw / source.path).",
    )
    _common(gen)
    backfill = sub.add_parser(
        "backfill",
        help="run stages for every date in a range, oldest first",
        description="Run the chosen stages (default: all) for each date from --from to --to "
        "inclusive, exactly as the nightly runs would; safe to rerun.",
    )
    backfill.add_argument(
        "--from", dest="first", type=_date, required=True, help="first run date, YYYY-MM-DD"
    )
    backfill.add_argument(
        "--to", dest="last", type=_date, required=True, help="last run date, YYYY-MM-DD (inclusive)"
    )
    backfill.add_argument(
        "--stage",
        action="append",
        choices=NIGHTLY,
        default=None,
        help="a stage to run for each date (repeatable; default: all)",
    )
    _common(backfill, with_run_date=False)
    rollback = sub.add_parser(
        "rollback",
        help="publish an earlier run's recommendations again (recommendations_latest)",
        description="Make an earlier run the published one: recommendations_latest is replaced "
        "(one Delta commit) by the rows that run wrote to recommendations. The next nightly "
        "score publishes its own run again.",
    )
    rollback.add_argument(
        "--to-run",
        required=True,
        metavar="RUN",
        help="a run date (YYYY-MM-DD) or a pipeline run id (column run_id of recommendations "
        "and pipeline_runs); a run replaced by a rerun of its date is found by time travel",
    )
    _common(rollback, with_run_date=False)
    promote = sub.add_parser(
        "promote",
        help="make a registered model version the champion (skips the evaluation gate)",
        description="Point the champion alias (mlflow.champion_alias) of mlflow.registered_model "
        "at --version by hand. The next score stage uses it.",
    )
    promote.add_argument("--version", required=True, help="the registered model version")
    _common(promote, with_run_date=False)
    demote = sub.add_parser(
        "demote",
        help="take the champion alias back to the previous champion",
        description="Mark the current champion demoted and point the alias at the version that "
        "was champion before it (promoted most recently, not demoted); with none, the alias is "
        "removed and scoring waits for a model that passes the gate or is promoted.",
    )
    _common(demote, with_run_date=False)
    catalog = sub.add_parser(
        "catalog",
        help="register every recspark table in the Spark catalog (catalog.database)",
        description="Create catalog.database in the configured metastore and point an entry at "
        "every existing recspark table (the stages do this as they write; run it after "
        "moving a lakehouse or changing the metastore). Prints the tables by name.",
    )
    _common(catalog, with_run_date=False)
    sql_server = sub.add_parser(
        "sql-server",
        help="serve the catalog over JDBC/ODBC (Spark Thrift server) until stopped",
        description="Register the tables, then start Spark's Thrift JDBC/ODBC server "
        "(HiveServer2 protocol) on catalog.sql_host:catalog.sql_port (default "
        "127.0.0.1:10000) and serve until SIGINT or SIGTERM. No login unless catalog.sql_auth "
        "is password (then user catalog.sql_user, password from catalog.sql_password_env or "
        "catalog.sql_password_file; required for an address beyond loopback). Clients: "
        "beeline -u jdbc:hive2://127.0.0.1:10000, PyHive, jaydebeapi, BI tools. With the "
        "embedded metastore, stop it before a nightly run on the same root (one JVM at a time).",
    )
    _common(sql_server, with_run_date=False)
    forget = sub.add_parser(
        "forget",
        help="erase users: their rows in every table, the id map, the online store, history",
        description="Delete the users' rows from every table (interactions, quarantine, "
        "features, sequences, splits, training set, recommendations), make their id-map "
        "entries tombstones (the index is never reused), delete their online-store entries and "
        "VACUUM the changed tables with privacy.vacuum_retention_hours (time travel to the "
        "versions that held them goes too). The next training run has none of their data. "
        "Each request is a row of the forget_requests table (counts, no ids). Ids as the "
        "source sends them (pseudonymised with the ingest key when ingest.pseudonymise_users "
        "is on). Prefer --users-file: ids on a command line stay in shell histories and logs.",
    )
    forget.add_argument(
        "--user",
        dest="users",
        action="append",
        default=[],
        metavar="ID",
        help="a user id (repeatable)",
    )
    forget.add_argument(
        "--users-file", help="a file with one user id per line (blank lines ignored)"
    )
    _common(forget, with_run_date=False)
    refresh = sub.add_parser(
        "refresh",
        help="refresh users' recommendations from a Kafka stream of events, between nights",
        description="A long-running stream of two queries over stream.kafka's topic. The "
        "refresh (a micro-batch every refresh.trigger_interval_s, offsets in "
        "refresh.checkpoint) cleans each batch as ingest does, recomputes the top-K of every "
        "user with new clean events with the model of the online store's current version, "
        "writes it there (one atomic write per user) and to the fresh_recommendations table, "
        "and each batch's health to refresh_batches. The ingest (every "
        "refresh.ingest_interval_s, offsets in refresh.ingest_checkpoint) MERGEs the clean "
        "events into interactions exactly once and quarantines the rest with each message's "
        "topic, partition and offset. Needs online.store and a night exported to it. Runs "
        "until SIGINT or SIGTERM (spark-submit jobs/refresh.py beside the nightly DAG).",
    )
    refresh.add_argument(
        "--available-now",
        action="store_true",
        help="process every message up to now, then stop (instead of running until stopped)",
    )
    refresh.add_argument(
        "--timeout-s", type=float, default=None, help="stop after this many seconds"
    )
    _common(refresh, with_run_date=False)
    demo = sub.add_parser(
        "demo",
        help="generate synthetic data, run every stage, print a summary",
        description="Generate the synthetic dataset, run the whole pipeline on the embedded "
        "default (local Spark, local Delta lakehouse, local MLflow store) and print "
        "a summary.",
    )
    _common(demo)
    _show_examples(demo)
    return parser


def _promote_or_demote(config: Config, args: argparse.Namespace) -> int:
    from recspark.tracking import demote, promote, setup_mlflow

    setup_mlflow(config)
    name = config.mlflow.registered_model
    if args.command == "promote":
        now = promote(config, args.version)
        print(f"{name} version {now.version} is now the champion")
    else:
        old, new = demote(config)
        after = f"version {new.version} is the champion again" if new else "no champion"
        print(f"{name} version {old.version} demoted; {after}")
    return 0


def _rollback(config: Config, args: argparse.Namespace) -> int:
    from recspark.scoring.publish import rollback
    from recspark.session import build_spark

    try:
        now, before = rollback(build_spark(config), config, args.to_run)
    except (ValueError, FileNotFoundError) as exc:
        print(f"recspark: {exc}", file=sys.stderr)
        return 2
    assert now is not None  # rollback has just published it
    print(
        f"recommendations_latest now holds run {now.run_id} of {now.run_date} "
        f"(model {now.model_name} version {now.model_version})"
        + (f"; it held run {before.run_id} of {before.run_date}" if before else "")
    )
    return 0


def _print_summary(
    spark: SparkSession, config: Config, run: PipelineRun, show_examples: bool = False
) -> None:
    """The run's summary: counts; example users' recommendations only when asked for."""
    from recspark.results import ScoreResult
    from recspark.scoring.publish import sample_recommendations
    from recspark.summary import format_summary

    scored = run.find(ScoreResult) is not None
    samples = (
        sample_recommendations(spark, config, run.run_date) if scored and show_examples else []
    )
    lakehouse = str(Path(config.table_path("interactions")).parent)
    print(redact(format_summary(run, lakehouse, samples)), flush=True)


def _backfill(config: Config, args: argparse.Namespace) -> int:
    from recspark.pipeline import run_backfill
    from recspark.session import build_spark

    if args.last < args.first:
        print(
            f"recspark: backfill: --to {args.last} is before --from {args.first}", file=sys.stderr
        )
        return 2
    stages = [s for s in NIGHTLY if s in (args.stage or NIGHTLY)]
    spark = build_spark(config)
    for run in run_backfill(spark, config, args.first, args.last, stages):
        _print_summary(spark, config, run)
    return 0


def _stages_of(args: argparse.Namespace) -> tuple[StageName, ...]:
    """The stages `run`, `generate` and `demo` run."""
    if args.command == "run":
        return NIGHTLY if args.stage == "all" else (args.stage,)
    return ("generate",) if args.command == "generate" else DEMO


def _run(config: Config, args: argparse.Namespace) -> int:
    from recspark.pipeline import run_stages
    from recspark.session import build_spark

    spark = build_spark(config)
    run = run_stages(spark, config, args.run_date, _stages_of(args))
    _print_summary(spark, config, run, getattr(args, "show_examples", False))
    return 0


def _catalog(config: Config, args: argparse.Namespace) -> int:
    from recspark.io.catalog import register_tables
    from recspark.session import build_spark

    if not config.catalog.enabled:
        print("recspark: catalog.enabled is false: no catalog to register in", file=sys.stderr)
        return 2
    spark = build_spark(config)
    register_tables(spark, config)
    database = config.catalog.database
    for table in sorted(t.name for t in spark.catalog.listTables(database)):
        print(f"{database}.{table}")
    return 0


def _sql_server(config: Config, args: argparse.Namespace) -> int:
    import signal
    import threading

    from recspark.io import sql_server
    from recspark.io.catalog import register_tables
    from recspark.session import build_spark

    if not config.catalog.enabled:
        print(
            "recspark: catalog.enabled is false: the SQL server serves the catalog", file=sys.stderr
        )
        return 2
    catalog = config.catalog
    # Before Spark starts: a missing password is a ConfigError, one line and exit 2 (main).
    password = sql_server.sql_password(config) if catalog.sql_auth == "password" else None
    spark = build_spark(config, sql_server.server_conf(config))
    register_tables(spark, config)
    sql_server.start(spark, config, password)
    login = f"user {catalog.sql_user}, password" if catalog.sql_auth == "password" else "no login"
    print(
        f"recspark SQL server on jdbc:hive2://{catalog.sql_host}:{catalog.sql_port} "
        f"(database {catalog.database}, {login}); Ctrl-C stops it",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    spark.stop()
    return 0


def _forget(config: Config, args: argparse.Namespace) -> int:
    from recspark.io.catalog import register_tables
    from recspark.privacy import forget
    from recspark.session import build_spark

    users = list(args.users)
    if args.users_file:
        try:
            users += Path(args.users_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            print(f"recspark: --users-file {args.users_file}: {exc.strerror}", file=sys.stderr)
            return exit_codes.USAGE
    users = [u for u in users if u.strip()]
    if not users:
        print("recspark: forget: give at least one --user ID or --users-file", file=sys.stderr)
        return exit_codes.USAGE
    spark = build_spark(config)
    result = forget(spark, config, users)
    register_tables(spark, config)  # forget_requests, by name, on its first request
    rows = ", ".join(f"{table} {n}" for table, n in sorted(result.rows_deleted.items()) if n)
    online = "" if result.online_deleted is None else f"; online store {result.online_deleted}"
    print(
        f"forget request {result.request_id}: {result.users_requested} users asked, "
        f"{result.users_found} in the id map; rows deleted: {rows or 'none'}{online}; "
        f"vacuumed: {', '.join(result.vacuumed) or 'nothing'} "
        f"(retention {config.privacy.vacuum_retention_hours:g} h)"
    )
    return 0


def _refresh(config: Config, args: argparse.Namespace) -> int:
    import signal

    from recspark.online.refresh import run_refresh
    from recspark.session import build_spark

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    from recspark.online.refresh import scheduler_conf

    spark = build_spark(config, scheduler_conf())
    # SIGTERM (spark-submit's kill, Airflow, systemd) stops the stream as Ctrl-C does.
    signal.signal(signal.SIGTERM, stop)
    try:
        run_refresh(spark, config, args.available_now, args.timeout_s)
    except KeyboardInterrupt:
        print("recspark refresh: stopped", file=sys.stderr)
    return 0


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], int]] = {
    "refresh": _refresh,
    "forget": _forget,
    "catalog": _catalog,
    "sql-server": _sql_server,
    "backfill": _backfill,
    "promote": _promote_or_demote,
    "demote": _promote_or_demote,
    "rollback": _rollback,
    "run": _run,
    "generate": _run,
    "demo": _run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.conf, args.env, args.overrides)
    except ConfigError as exc:
        print(redact(f"recspark: configuration error: {exc}"), file=sys.stderr)
        return exit_codes.USAGE
    remember_config(config)  # its secrets are redacted from every line printed from now on
    try:
        return COMMANDS[args.command](config, args)
    except Exception as exc:
        from recspark.failures import after_lines, classify, one_line

        failure = classify(exc)
        if args.debug:
            raise
        if failure is None:  # a bug: Python's traceback, with any secret in it redacted
            print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, flush=True)
            return exit_codes.BUG
        print(one_line(exc, failure), *after_lines(exc), sep="\n", file=sys.stderr, flush=True)
        return failure.code
