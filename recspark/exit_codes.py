"""recspark's exit codes (standard library only: `--help` prints them without Spark).

Which failure maps to which code is `recspark.failures`; the "Failure modes" table of the
operations guide (docs/guides/operations.md) says what the operator sees and what to do.
"""

from __future__ import annotations

OK = 0
BUG = 1
USAGE = 2
INPUT = 3
TABLE = 4
NO_MODEL = 5
TRACKING = 6
CONFLICT = 7
TRAINING = 8
VALIDATION = 9
ONLINE_STORE = 10
HEALTH = 11

EXIT_CODES: dict[int, str] = {
    BUG: "unexpected error (a bug): Python's traceback",
    USAGE: "bad command line or configuration",
    INPUT: "the input: no source files, an unreadable source, rows unaccounted for",
    TABLE: "a table is missing or unreadable",
    NO_MODEL: "no model: the gate refused every model so far; none for the date; no such version",
    TRACKING: "the MLflow tracking server does not answer",
    CONFLICT: "a concurrent write to the same Delta table (another run of the same date)",
    TRAINING: "training produced no usable model",
    VALIDATION: "the run's recommendations failed validation: nothing published",
    ONLINE_STORE: "the online store could not be written: the previous version stays current",
    HEALTH: "a monitoring check failed (run_health): the night stopped, nothing published",
}


def epilog() -> str:
    """The exit codes, for `--help`."""
    lines = [f"  {code:>2}  {text}" for code, text in EXIT_CODES.items()]
    return "exit codes:\n   0  success\n" + "\n".join(lines)
