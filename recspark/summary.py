"""The report `recspark demo` and `recspark run` print after a run: one block per stage result.

Pure formatting of typed results (`recspark.results`); it reads no table. By default it holds
counts only: no user's id or recommendations (they would land in logs, Airflow's included).
Example users' recommendations are shown only when the caller asks for them (`--show-examples`)
and reads them (`recspark.scoring.publish.sample_recommendations`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from recspark.results import (
    EvaluateResult,
    ExportResult,
    FeaturizeResult,
    GenerateResult,
    IngestResult,
    PipelineRun,
    ReportResult,
    ScoreResult,
    StageResult,
    TrainResult,
)
from recspark.scoring.publish import UserSample

INDENT = " " * 17


def generate_lines(g: GenerateResult) -> list[str]:
    return [f"  generated    {g.lines:,} raw lines ({g.defects:,} with a defect)"]


def ingest_lines(i: IngestResult) -> list[str]:
    reasons = ", ".join(f"{k} {v:,}" for k, v in i.by_reason.items()) or "none"
    return [
        f"  ingest       rows in {i.rows_in:,} = clean {i.clean:,} + "
        f"quarantined {i.quarantined:,} ({reasons}); {i.inserted:,} new events merged"
    ]


def featurize_lines(f: FeaturizeResult) -> list[str]:
    return [
        f"  featurize    {f.users:,} users, {f.items:,} items, "
        f"{f.train_pairs:,} train pairs, {f.holdout_pairs:,} held out, "
        f"{f.training_rows:,} training rows (with negatives); below the minimum "
        f"interactions (kept, marked): {f.users_below_min:,} users, "
        f"{f.items_below_min:,} items"
    ]


def train_lines(t: TrainResult) -> list[str]:
    how = {
        "closed_form": f"closed form on {t.device}",
        "kept": "a kept fit of an earlier run (train.retrain_every)",
    }.get(t.launcher, f"{t.ranks} {t.launcher} ranks on {t.device}")
    lines = [f"  train        {t.model_name} version {t.model_version}, {how}, {t.seconds:.0f}s"]
    lines += [
        f"{INDENT}epoch {e.epoch}: loss {e.loss:.4f}, validation ndcg {e.val_ndcg:.4f}, "
        f"{e.samples_per_s:,.0f} samples/s"
        for e in t.history
    ]
    if t.candidates:
        ranked = sorted(
            t.candidates.items(), key=lambda kv: -kv[1] if kv[1] == kv[1] else float("inf")
        )
        picked = ", ".join(f"{name} {ndcg:.4f}" for name, ndcg in ranked)
        lines.append(f"{INDENT}candidates (validation ndcg): {picked}; selected {t.model_name}")
    lines += [f"{INDENT}skipped {name}: {why}" for name, why in t.skipped.items()]
    lines += [f"{INDENT}not retrained {name}: {what}" for name, what in t.kept.items()]
    return lines


def evaluate_lines(e: EvaluateResult) -> list[str]:
    names = list(e.model)
    lines = [
        f"  evaluate     {e.users:,} held-out users, K={e.k}",
        f"{INDENT}{'':12}" + "".join(f"{m:>10}" for m in names) + f"   (@{e.k})",
    ]
    for label, values in e.metrics.items():
        lines.append(f"{INDENT}{label:12}" + "".join(f"{values[m]:>10.4f}" for m in names))
    for segment, values in sorted(e.segments[e.model_name].items()):
        lines.append(
            f"{INDENT}{e.model_name}, {segment} users ({int(values['users']):,}): "
            f"ndcg@{e.k} {values['ndcg']:.4f}, hit_rate@{e.k} {values['hit_rate']:.4f}"
        )
    verdict = "passed, now the champion" if e.gate_passed else "REFUSED, champion unchanged"
    lines.append(f"{INDENT}gate: {verdict} ({e.gate_reason})")
    return lines


def score_lines(s: ScoreResult) -> list[str]:
    return [
        f"  score        {s.rows:,} recommendations for {s.users:,} users "
        f"({s.personalized_users:,} personalized, {s.fallback_users:,} popular "
        f"fallback; catalog coverage {s.coverage:.1%}), model version "
        f"{s.model_version}; validated and published to recommendations_latest"
    ]


def export_lines(x: ExportResult) -> list[str]:
    what = {
        "off": "off (online.store is null)",
        "kept": f"version {x.version} already current in {x.store}",
        "switched": f"version {x.version} made current again in {x.store}",
        "written": f"{x.users:,} users written to {x.store} as version {x.version}, now current",
    }[x.action]
    return [f"  export       {what}"]


def report_lines(r: ReportResult) -> list[str]:
    return [f"  report       {r.path}"]


def sample_lines(samples: Sequence[UserSample]) -> list[str]:
    """One line per sample user: their best items, each with its score and explanation."""
    lines = []
    for sample in samples:
        items = ", ".join(
            f"{item} ({score:.2f}" + (f", because of {why})" if why else ")")
            for item, score, why in sample.items
        )
        lines.append(f"{INDENT}{sample.user_id}: {items}")
    return lines


def stage_lines(result: StageResult) -> list[str]:
    """The summary lines of one stage's result."""
    formatters: list[tuple[type, Callable[..., list[str]]]] = [
        (GenerateResult, generate_lines),
        (IngestResult, ingest_lines),
        (FeaturizeResult, featurize_lines),
        (TrainResult, train_lines),
        (EvaluateResult, evaluate_lines),
        (ScoreResult, score_lines),
        (ExportResult, export_lines),
        (ReportResult, report_lines),
    ]
    return next(fmt(result) for kind, fmt in formatters if isinstance(result, kind))


def format_summary(run: PipelineRun, lakehouse: str, samples: Sequence[UserSample] = ()) -> str:
    """The closing report of a run: counts, training, evaluation, and the recommendations of
    the example users in `samples` (none by default).

    Args:
        run: the stages' results.
        lakehouse: the folder of the Delta tables (printed in the heading).
        samples: users whose recommendations are shown after the score stage's line (personal
            data: only when the operator asked for examples).
    """
    lines = [f"recspark summary for run date {run.run_date} (lakehouse: {lakehouse})"]
    for stage in run.stages:
        lines += stage_lines(stage.result)
        if isinstance(stage.result, ScoreResult):
            lines += sample_lines(samples)
    return "\n".join(lines)


__all__ = ["format_summary", "stage_lines"]
