"""The evaluation report: Markdown tables and PNG plots, logged to the model's MLflow run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recspark.evaluation.metrics import BEYOND, METRICS


@dataclass
class ModelResult:
    """Everything measured for one model (the challenger, the champion or a baseline)."""

    at_k: dict[int, dict[str, float]]  # accuracy metrics at every cut-off
    beyond: dict[str, float]  # coverage, novelty, gini at the gate's K
    segments: dict[str, dict[str, float]]  # segment -> metrics at the gate's K (+ "users")
    exposure: NDArray[np.float64] = field(repr=False)  # times each item is in a top-K


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _accuracy_tables(results: Mapping[str, ModelResult], k: int, ks: list[int]) -> list[str]:
    lines = [f"## Accuracy at K = {k}", ""]
    lines += _table(
        ["model", *METRICS, *BEYOND],
        [
            [
                label,
                *[f"{r.at_k[k][m]:.4f}" for m in METRICS],
                *[f"{r.beyond[m]:.4f}" for m in BEYOND],
            ]
            for label, r in results.items()
        ],
    )
    lines += ["", "## NDCG and recall at every cut-off", ""]
    lines += _table(
        ["model", *[f"ndcg@{c}" for c in ks], *[f"recall@{c}" for c in ks]],
        [
            [
                label,
                *[f"{r.at_k[c]['ndcg']:.4f}" for c in ks],
                *[f"{r.at_k[c]['recall']:.4f}" for c in ks],
            ]
            for label, r in results.items()
        ],
    )
    return lines


def _segment_table(
    results: Mapping[str, ModelResult], k: int, segments: list[str], active_min: int
) -> list[str]:
    lines = [f"## Segments at K = {k} (new: fewer than {active_min} train interactions)", ""]
    return lines + _table(
        ["model", "segment", "users", "ndcg", "recall", "hit_rate", "mrr"],
        [
            [label, seg, f"{int(r.segments[seg]['users'])}"]
            + [f"{r.segments[seg][m]:.4f}" for m in ("ndcg", "recall", "hit_rate", "mrr")]
            for label, r in results.items()
            for seg in segments
            if seg in r.segments
        ],
    )


def _plot_accuracy(results: Mapping[str, ModelResult], ks: list[int], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, r in results.items():
        axes[0].plot(ks, [r.at_k[c]["ndcg"] for c in ks], marker="o", label=label)
        axes[1].plot(ks, [r.at_k[c]["recall"] for c in ks], marker="o", label=label)
    for ax, name in zip(axes, ("NDCG", "recall"), strict=True):
        ax.set_xlabel("K")
        ax.set_title(f"{name}@K")
        ax.grid(alpha=0.3)
    axes[0].legend()
    return _save(fig, path)


def _plot_exposure(results: Mapping[str, ModelResult], k: int, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for label, r in results.items():
        counts = np.sort(r.exposure)
        if counts.sum() > 0:
            share = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
            items = np.linspace(0, 1, len(share))
            ax.plot(items, share, label=f"{label} (Gini {r.beyond['gini']:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="equal exposure")
    ax.set_xlabel("share of the catalog (least recommended first)")
    ax.set_ylabel(f"share of top-{k} recommendations")
    ax.set_title("Exposure (Lorenz curve)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_segments(
    results: Mapping[str, ModelResult], k: int, segments: list[str], path: Path
) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / max(len(results), 1)
    for i, (label, r) in enumerate(results.items()):
        xs = np.arange(len(segments)) + i * width
        ax.bar(xs, [r.segments.get(s, {}).get("ndcg", 0.0) for s in segments], width, label=label)
    ax.set_xticks(np.arange(len(segments)) + 0.4 - width / 2, segments)
    ax.set_ylabel(f"NDCG@{k}")
    ax.set_title("NDCG by user segment")
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_report(
    out_dir: Path,
    results: Mapping[str, ModelResult],
    model_label: str,
    k: int,
    run_date: dt.date,
    gate: str,
    active_min: int,
) -> list[Path]:
    """Write evaluation_report.md and its plots into `out_dir`; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    ks = sorted(next(iter(results.values())).at_k)
    segments = sorted({s for r in results.values() for s in r.segments})
    lines = [
        f"# Evaluation report, run date {run_date}",
        "",
        f"Model under evaluation: **{model_label}**. Gate: {gate}.",
        "",
        *_accuracy_tables(results, k, ks),
        "",
        *_segment_table(results, k, segments, active_min),
    ]
    files = [
        _plot_accuracy(results, ks, out_dir / "accuracy_at_k.png"),
        _plot_exposure(results, k, out_dir / "exposure_lorenz.png"),
        _plot_segments(results, k, segments, out_dir / "segments.png"),
    ]
    lines += ["", *[f"![{f.stem}]({f.name})" for f in files], ""]
    report = out_dir / "evaluation_report.md"
    report.write_text("\n".join(lines))
    return [report, *files]
