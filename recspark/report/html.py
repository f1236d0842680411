"""The run report as one self-contained HTML page: inline CSS and SVG charts, no scripts, no
files or fonts fetched, so it opens anywhere (a browser, MLflow's artifact view, an e-mail)."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from recspark.evaluation.metrics import gini
from recspark.report.data import Churn, Curve, ReportData

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em}
td.n{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#b00}.good{color:#070}
svg{background:#fafafa;border:1px solid #ddd;margin:.5em 1em .5em 0}.muted{color:#777}
"""
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
ORDER = ("generate", "ingest", "featurize", "train", "evaluate", "score", "export", "report")


def esc(value: Any) -> str:
    return html.escape(str(value))


def number(value: Any, digits: int = 4) -> str:
    """`digits` decimals (0: a count with thousands separators); n/a for none or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if digits == 0:
        return f"{round(float(value)):,}"
    return f"{float(value):.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{cell}</td>' if i >= numeric_from else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """At most `most` round values (steps of 1, 2 or 5 times a power of ten) within [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(most - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    count = math.floor((high - first) / step + 1e-9) + 1
    return [round(first + i * step, 12) for i in range(count)]


def _ticks(
    x_ticks: Sequence[float], y_ticks: Sequence[float], at: Any, width: int, height: int, pad: int
) -> str:
    """Tick marks, values and light grid lines of both axes (`at(x, y)` -> (px, py))."""
    marks = []
    for x in x_ticks:
        px = at(x, 0.0)[0]
        marks.append(
            f'<line x1="{px:.1f}" y1="{height - pad}" x2="{px:.1f}" y2="{height - pad + 4}" '
            f'stroke="#999"/><text x="{px:.1f}" y="{height - pad + 15}" text-anchor="middle" '
            f'font-size="10">{x:.4g}</text>'
        )
    for y in y_ticks:
        py = at(0.0, y)[1]
        marks.append(
            f'<line x1="{pad}" y1="{py:.1f}" x2="{width - pad}" y2="{py:.1f}" stroke="#eee"/>'
            f'<line x1="{pad - 4}" y1="{py:.1f}" x2="{pad}" y2="{py:.1f}" stroke="#999"/>'
            f'<text x="{pad - 6}" y="{py + 3:.1f}" text-anchor="end" font-size="10">{y:.4g}</text>'
        )
    return "".join(marks)


def line_chart(
    title: str, series: Mapping[str, Sequence[tuple[float, float]]], x_label: str, y_label: str
) -> str:
    """An SVG line chart of named (x, y) series (NaN points left out), with ticks and values on
    both axes."""
    width, height, pad = 460, 260, 50
    points = [(x, y) for s in series.values() for x, y in s if math.isfinite(y)]
    if not points:
        return f'<p class="muted">{esc(title)}: nothing to plot</p>'
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def spot(x: float, y: float) -> tuple[float, float]:
        px = pad + (x - x0) / (x1 - x0) * (width - 2 * pad)
        py = height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)
        return px, py

    def at(x: float, y: float) -> str:
        px, py = spot(x, y)
        return f"{px:.1f},{py:.1f}"

    lines, legend = [], []
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(at(x, y) for x, y in values if math.isfinite(y))
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        legend.append(
            f'<text x="{width - pad}" y="{pad + 14 * i}" text-anchor="end" fill="{colour}" '
            f'font-size="11">{esc(name)}</text>'
        )
    axes = (
        _ticks(nice_ticks(x0, x1), nice_ticks(y0, y1), spot, width, height, pad)
        + f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>'
        f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle" font-size="11">'
        f"{esc(x_label)}</text>"
        f'<text x="12" y="{pad - 16}" font-size="11">{esc(y_label)}</text>'
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="12">{esc(title)}</text>'
    )
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="{esc(title)}">'
        f"{axes}{''.join(lines)}{''.join(legend)}</svg>"
    )


def lorenz_points(counts: np.ndarray[Any, Any], n_points: int = 101) -> list[tuple[float, float]]:
    """(share of items, share of recommendations) along the Lorenz curve of `counts`."""
    if not len(counts) or counts.sum() == 0:
        return []
    cumulative = np.concatenate([[0.0], np.cumsum(np.sort(counts))]) / counts.sum()
    shares = np.linspace(0, 1, n_points)
    return [(float(s), float(cumulative[round(s * len(counts))])) for s in shares]


def _header(data: ReportData) -> str:
    train, evaluate = data.details("train"), data.details("evaluate")
    facts = [
        ("run date", esc(data.run_date)),
        ("model", f"{esc(train.get('model_name', 'n/a'))} version "
         f"{esc(train.get('model_version', 'n/a'))}"),
        ("gate", _gate(evaluate)),
        ("run ids", esc(", ".join(sorted({r.run_id for r in data.stages.values()})) or "n/a")),
    ]  # fmt: skip
    return table(["", ""], facts, numeric_from=2)


def _gate(evaluate: Mapping[str, Any]) -> str:
    if "gate_passed" not in evaluate:
        return "n/a"
    passed = bool(evaluate["gate_passed"])
    css, word = ("good", "passed") if passed else ("bad", "refused")
    return f'<span class="{css}">{word}</span>: {esc(evaluate.get("gate_reason", ""))}'


def _stages(data: ReportData) -> str:
    known = [s for s in ORDER if s in data.stages] + sorted(set(data.stages) - set(ORDER))
    rows = [
        (esc(s), esc(data.stages[s].status), number(data.stages[s].duration_s, 1)) for s in known
    ]
    return "<h2>Stages</h2>" + table(["stage", "status", "seconds"], rows, numeric_from=2)


def _ingest(data: ReportData) -> str:
    ingest = data.details("ingest")
    if not ingest:
        return '<h2>Ingest</h2><p class="muted">no ingest for this run date</p>'
    counts = [
        ("rows in", number(ingest.get("rows_in"), 0)),
        ("clean", number(ingest.get("clean"), 0)),
        ("quarantined", number(ingest.get("quarantined"), 0)),
        ("inserted into interactions", number(ingest.get("inserted"), 0)),
    ]
    reasons = sorted(data.stages["ingest"].reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    return (
        "<h2>Ingest</h2>"
        + table(["", "rows"], counts)
        + "<h3>Quarantine reasons</h3>"
        + table(["reason", "rows"], [(esc(r), number(n, 0)) for r, n in reasons])
    )


def _training(data: ReportData) -> str:
    selected = data.details("train").get("model_name")
    rows = [
        (esc(name) + (" (selected)" if name == selected else ""), number(v))
        for name, v in sorted(data.candidates.items(), key=lambda kv: -kv[1])
    ]
    charts = ""
    if data.curves:
        charts = line_chart(
            "validation NDCG by epoch", _series(data.curves, "val_ndcg"), "epoch", "NDCG"
        ) + line_chart("training loss by epoch", _series(data.curves, "loss"), "epoch", "loss")
    return (
        "<h2>Training</h2>"
        + table(["candidate", "validation NDCG"], rows)
        + (charts or '<p class="muted">no per-epoch training this run (closed-form models)</p>')
    )


def _series(curves: Mapping[str, Curve], what: str) -> dict[str, list[tuple[float, float]]]:
    return {
        name: list(zip(map(float, c.epochs), getattr(c, what), strict=True))
        for name, c in curves.items()
    }


def _metrics(data: ReportData) -> str:
    if not data.metrics:
        return '<h2>Metrics</h2><p class="muted">no model_metrics for this run date</p>'
    accuracy = ("ndcg", "precision", "recall", "hit_rate", "map", "mrr")
    wanted = [f"{m}@{data.k}" for m in (*accuracy, "coverage", "novelty", "gini")]
    wanted = [m for m in wanted if any(m in values for values in data.metrics.values())]
    rows = [
        (esc(model), *[number(values.get(m)) for m in wanted])
        for model, values in sorted(data.metrics.items())
    ]
    return f"<h2>Holdout metrics (K = {data.k})</h2>" + table(["model", *wanted], rows)


def _exposure(data: ReportData) -> str:
    counts = data.exposure
    if not len(counts) or counts.sum() == 0:
        return '<h2>Exposure</h2><p class="muted">no recommendations for this run date</p>'
    points = lorenz_points(counts)
    chart = line_chart(
        "exposure (Lorenz curve)",
        {"recommendations": points, "equal exposure": [(0.0, 0.0), (1.0, 1.0)]},
        "share of the catalog, least recommended first",
        "share of recommendations",
    )
    facts = [
        ("items recommended", number(int((counts > 0).sum()), 0)),
        ("catalog", number(data.n_items, 0)),
        ("coverage", number(float((counts > 0).sum()) / max(data.n_items, 1))),
        ("Gini of exposure", number(gini(counts))),
    ]
    return "<h2>Exposure</h2>" + table(["", ""], facts) + chart


def _churn(churn: Churn | None) -> str:
    if churn is None:
        return '<h2>Churn</h2><p class="muted">no earlier run to compare with</p>'
    facts = [
        ("previous run date", esc(churn.previous)),
        ("users in both runs", number(churn.users_both, 0)),
        ("users new in this run", number(churn.users_new, 0)),
        ("users no longer recommended to", number(churn.users_gone, 0)),
        ("users whose items did not change", f"{churn.unchanged:.1%}"),
        ("mean overlap of a user's items (Jaccard)", number(churn.overlap)),
    ]
    return "<h2>Churn against the previous run</h2>" + table(["", ""], facts)


def _figure(value: float | None) -> str:
    """A count as a count (rows in), a rate or share with 4 decimals."""
    whole = value is not None and abs(value) >= 1 and float(value).is_integer()
    return number(value, 0 if whole else 4)


def _health(data: ReportData) -> str:
    if not data.health:
        return '<h2>Monitoring</h2><p class="muted">no checks recorded for this run date</p>'
    css = {"fail": "bad", "warn": "bad", "ok": "good"}
    rows = [
        (
            esc(c.check), esc(c.subject),
            f'<span class="{css.get(c.status, "muted")}">{esc(c.status)}</span>',
            _figure(c.value), _figure(c.baseline),
        )
        for c in data.health
    ]  # fmt: skip
    header = ["check", "subject", "status", "value", "trailing median"]
    return "<h2>Monitoring (run_health)</h2>" + table(header, rows, numeric_from=3)


def _refresh(data: ReportData) -> str:
    summary = data.refresh
    title = f"<h2>Refresh stream on {esc(data.run_date)} (refresh_batches)</h2>"
    if summary is None:
        return title + '<p class="muted">no refresh_batches rows for that day</p>'
    median, p95, most = summary.batch_s
    rows = [
        ("micro-batches", number(summary.batches, 0)),
        ("messages", number(summary.messages, 0)),
        ("quarantined messages", number(summary.quarantined, 0)),
        ("users refreshed", number(summary.users, 0)),
        ("not written (the version changed)", number(summary.not_written, 0)),
        ("events for items the model lacks", number(summary.unknown_items, 0)),
        ("batch seconds: median / p95 / max", f"{median:.1f} / {p95:.1f} / {most:.1f}"),
        ("latency, event to Redis, s: worst batch p95 / max",
         f"{number(summary.latency_p95_s, 1)} / {number(summary.latency_max_s, 1)}"),
        ("Kafka lag (messages behind), most", number(summary.offsets_behind, 0)),
        ("model versions", esc(", ".join(summary.model_versions))),
    ]  # fmt: skip
    return title + table(["", "value"], rows)


def render(data: ReportData) -> str:
    """The whole page."""
    body = "".join(
        [
            f"<h1>recspark run report: {esc(data.run_date)}</h1>",
            _header(data),
            _stages(data),
            _ingest(data),
            _training(data),
            _metrics(data),
            _exposure(data),
            _churn(data.churn),
            _health(data),
            _refresh(data),
        ]
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>recspark run {esc(data.run_date)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


__all__ = ["lorenz_points", "render"]
