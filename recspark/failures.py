"""Expected operational failures: one line for the operator and a documented exit code.

`recspark` (and every `jobs/*.py`) turns these into `recspark: <what failed> (<what to do>; exit N)`
on stderr and the exit code (`recspark.exit_codes`), without a traceback; `--debug` or
RECSPARK_DEBUG=1 re-raises. Anything else is a bug: Python's traceback and exit code 1. What is
printed has its secrets redacted (`recspark.credentials.redact`); a failure to record the failure
in `pipeline_runs` follows the line as a note (`after_lines`), never in its place.
"""

from __future__ import annotations

from dataclasses import dataclass

from recspark import exit_codes as codes
from recspark.config import ConfigError
from recspark.credentials import redact
from recspark.etl.ingest import AccountingError
from recspark.health import HealthCheckError
from recspark.io.delta import (
    MissingTableError,
    SchemaMismatchError,
    UnreadableTableError,
    first_line,
)
from recspark.io.sources import SourceError
from recspark.online.export import OnlineExportError
from recspark.online.refresh import RefreshError
from recspark.pipeline import UNRECORDED
from recspark.scoring.publish import ValidationError
from recspark.tracking import NoModelError, TrackingUnreachableError
from recspark.training.launch import TrainingError


@dataclass(frozen=True)
class Failure:
    code: int
    hint: str  # what to do, appended to the exception's own message


# (exception classes, code, what to do), first match wins.
_KNOWN: list[tuple[tuple[type[BaseException], ...], int, str]] = [
    ((ConfigError,), codes.USAGE, "fix the configuration"),
    (
        (SourceError, AccountingError),
        codes.INPUT,
        "check `source` in the configuration and the files",
    ),
    (
        (MissingTableError, UnreadableTableError, SchemaMismatchError),
        codes.TABLE,
        "run the stage that writes it, or restore the table (see Failure modes in "
        "docs/guides/operations.md)",
    ),
    (
        (NoModelError,),
        codes.NO_MODEL,
        "look at model_metrics and the evaluation report; `recspark promote --version N` "
        "promotes a version by hand",
    ),
    (
        (TrackingUnreachableError,),
        codes.TRACKING,
        "start the tracking server or fix mlflow.tracking_uri",
    ),
    ((TrainingError,), codes.TRAINING, "look at the training rows and the MLflow run of this date"),
    (
        (ValidationError,),
        codes.VALIDATION,
        "the previous recommendations stay published; fix and rerun score",
    ),
    ((OnlineExportError,), codes.ONLINE_STORE, "check the store (online.*) and rerun export"),
    (
        (RefreshError,),
        codes.ONLINE_STORE,
        "set online.store and export a night's recommendations before the refresh stream",
    ),
    (
        (HealthCheckError,),
        codes.HEALTH,
        "look at run_health and the day's data; to accept the day, rerun the stage with the "
        "check's threshold relaxed (--set monitoring.checks.NAME.fail_...=null)",
    ),
]

# Delta's conflict exceptions, by their JVM class (a py4j error) or their Python class.
_CONFLICTS = (
    "DeltaConcurrentModificationException",
    "ConcurrentWriteException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
)
_CONFLICT_HINT = (
    "another run wrote the same table at the same time: let it finish, then rerun this stage "
    "for the date (every stage replaces only its date, so nothing is doubled)"
)


def _is_delta_conflict(exc: BaseException) -> bool:
    if type(exc).__name__ in _CONFLICTS and type(exc).__module__.startswith("delta."):
        return True
    java = getattr(exc, "java_exception", None)  # py4j.protocol.Py4JJavaError
    if java is None:
        return False
    try:
        name = str(java.getClass().getName())
    except Exception:  # a dead JVM: not a conflict we can name
        return False
    return name.startswith("io.delta.exceptions.") and name.rsplit(".", 1)[1] in _CONFLICTS


def classify(exc: BaseException) -> Failure | None:
    """The exit code and advice for an expected failure; None for anything else (a bug)."""
    for classes, code, hint in _KNOWN:
        if isinstance(exc, classes):
            return Failure(code, hint)
    if _is_delta_conflict(exc):
        return Failure(codes.CONFLICT, _CONFLICT_HINT)
    return None


def one_line(exc: BaseException, failure: Failure) -> str:
    """`recspark: [stage S (D): ]<message>: <what to do>` on one line, secrets redacted."""
    notes = [n for n in getattr(exc, "__notes__", []) if n.startswith("stage ")]
    message = first_line(exc)
    if failure.code == codes.CONFLICT:
        message = f"Delta write conflict ({first_line(exc, 300)})"
    where = f"{notes[0]}: " if notes else ""
    return redact(f"recspark: {where}{message} ({failure.hint}; exit {failure.code})")


def after_lines(exc: BaseException) -> list[str]:
    """What the operator reads after `one_line`: a failure that came while recording this one
    (`pipeline_runs` could not be written), never in its place."""
    notes = [n for n in getattr(exc, "__notes__", []) if n.startswith(UNRECORDED)]
    return [redact(f"  note: {n}") for n in notes]
