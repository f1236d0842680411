"""Monitoring of the night: real nightly ingests build the trailing baseline, then a day with 30 %
of the usual events and a day with a quarantine spike and only new user ids are stopped, recorded
in `run_health`, and reported as one line with exit code 11. (A run whose recommendations changed
for every user: tests/test_publish.py, beside the shared night it needs.)"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark import exit_codes
from recspark.cli import main
from recspark.config import CheckThresholds, Config, load_config
from recspark.health import ALL, Figure, HealthCheckError, judge
from recspark.io.delta import read_table
from recspark.pipeline import run_generate, run_stages

from .conftest import CONF_DIR

pytestmark = pytest.mark.integration
FIRST = dt.date(2025, 11, 1)
NORMAL_DAYS = 3  # 11-01..11-03: the 3rd is checked against 2 trailing runs
SHORT_DAY = dt.date(2025, 11, 4)  # 30 % of its events arrive
ODD_DAY = dt.date(2025, 11, 5)  # half the event types unknown, every user id new
SETTINGS = [
    "source.path=events/date={run_date}",
    "monitoring.min_trailing_runs=2",  # one nightly fewer to build the baseline
    "synthetic.n_days=5",
    "synthetic.n_interactions=6000",
    "synthetic.late_rate=0.0",
    "catalog.enabled=false",
]


def test_judge_compares_with_the_trailing_median() -> None:
    bounds = CheckThresholds(warn_below=0.7, fail_below=0.4, warn_above=2.0)
    figure = Figure("rows_in", ALL, 300.0)
    assert judge(figure, [1000.0, 900.0, 1100.0], bounds, 3, 0.001).status == "fail"
    assert judge(figure, [1000.0, 900.0], bounds, 3, 0.001).status == "no_baseline"
    assert judge(Figure("rows_in", ALL, 600.0), [1000.0] * 3, bounds, 3, 0.001).status == "warn"
    assert judge(Figure("rows_in", ALL, 1000.0), [900.0] * 3, bounds, 3, 0.001).status == "ok"
    assert judge(Figure("rows_in", ALL, None), [900.0] * 3, bounds, 3, 0.001).status == "skipped"
    rate = CheckThresholds(warn_above=3.0, fail_above=10.0)
    # a usual rate of 0: the floor keeps one quarantined row from being infinitely worse
    assert judge(Figure("quarantine_rate", "x", 0.002), [0.0] * 3, rate, 3, 0.001).status == "ok"
    assert judge(Figure("quarantine_rate", "x", 0.02), [0.0] * 3, rate, 3, 0.001).status == "fail"
    churn = CheckThresholds(warn_above=0.8, fail_above=0.98)  # absolute: no history needed
    assert judge(Figure("churn", ALL, 1.0), [], churn, 3, 0.001).status == "fail"
    assert judge(Figure("churn", ALL, 0.3), [], churn, 3, 0.001).status == "ok"


def _day_files(config: Config, day: dt.date) -> list[Path]:
    folder = Path(config.raw_path) / "events" / f"date={day}"
    return sorted(p for p in folder.iterdir() if p.name.startswith("part-"))


def _rewrite(config: Config, day: dt.date, change: Callable[[int, str], str | None]) -> None:
    """Rewrite the day's event lines: `change(line number, line)` gives the new line or None."""
    for path in _day_files(config, day):
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = [new for n, line in enumerate(lines) if (new := change(n, line)) is not None]
        path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        path.with_name(f".{path.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of it


def _odd(n: int, line: str) -> str:
    fields = line.split(",")
    if len(fields) == 5:
        fields[0] = f"renamed-{fields[0]}"
        if n % 2 == 0:
            fields[2] = "unheard_of_event"
    return ",".join(fields)


@pytest.fixture(scope="module")
def nightly(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Config:
    config = load_config(
        CONF_DIR, "test", [f"paths.root={tmp_path_factory.mktemp('health')}", *SETTINGS]
    )
    run_generate(spark, config, FIRST)
    for n in range(NORMAL_DAYS):
        run_stages(spark, config, FIRST + dt.timedelta(days=n), ["ingest", "featurize"])
    _rewrite(config, SHORT_DAY, lambda n, line: line if n % 10 < 3 else None)
    _rewrite(config, ODD_DAY, _odd)
    return config


def _health(spark: SparkSession, config: Config, day: dt.date) -> dict[tuple[str, str], str]:
    rows = read_table(spark, config.table_path("run_health"), day).collect()
    return {(r["check"], r["subject"]): r["status"] for r in rows}


def _cli(config: Config, capsys: pytest.CaptureFixture[str], day: dt.date, *sets: str):
    argv = ["run", "--stage", "ingest", "--run-date", day.isoformat(), "--conf", str(CONF_DIR)]
    argv += ["--env", "test", "--set", f"paths.root={config.paths.root}"]
    for setting in [*SETTINGS, *sets]:
        argv += ["--set", setting]
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


def test_usual_days_pass_against_their_trailing_runs(spark: SparkSession, nightly: Config) -> None:
    first = _health(spark, nightly, FIRST)
    assert first[("rows_in", ALL)] == "no_baseline"
    assert first[("new_users", ALL)] == "no_baseline"
    last = _health(spark, nightly, FIRST + dt.timedelta(days=NORMAL_DAYS - 1))
    assert last[("rows_in", ALL)] == "ok"
    assert last[("quarantine_rate", ALL)] in ("ok", "warn")
    assert "fail" not in last.values()


def test_a_day_with_a_third_of_the_events_stops_the_night(
    spark: SparkSession, nightly: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _cli(nightly, capsys, SHORT_DAY)
    assert code == exit_codes.HEALTH
    line = [x for x in err.splitlines() if x.startswith("recspark: ")]
    assert len(line) == 1 and "Traceback" not in err
    assert "rows_in[all]" in line[0] and "fail_below 0.4" in line[0]
    assert _health(spark, nightly, SHORT_DAY)[("rows_in", ALL)] == "fail"
    runs = read_table(spark, nightly.table_path("pipeline_runs"), SHORT_DAY)
    assert [r["status"] for r in runs.filter(F.col("stage") == "ingest").collect()] == ["failed"]
    # accepted by the operator: the same day with the threshold relaxed passes, as a warning
    code, _ = _cli(nightly, capsys, SHORT_DAY, "monitoring.checks.rows_in.fail_below=null")
    assert code == 0
    latest = read_table(spark, nightly.table_path("run_health"), SHORT_DAY)
    statuses = latest.filter("check = 'rows_in'").orderBy("checked_at").collect()
    assert [r["status"] for r in statuses] == ["fail", "warn"]


def test_quarantine_spike_and_unknown_ids_fail_their_checks(
    spark: SparkSession, nightly: Config
) -> None:
    with pytest.raises(HealthCheckError, match="new_users"):
        run_stages(spark, nightly, ODD_DAY, ["ingest"])
    health = _health(spark, nightly, ODD_DAY)
    assert health[("quarantine_rate", ALL)] == "fail"
    assert health[("quarantine_rate", "unknown_event_type")] == "fail"
    assert health[("new_users", ALL)] == "fail"
    assert health[("new_items", ALL)] in ("ok", "warn")
    assert health[("rows_in", ALL)] == "ok"
