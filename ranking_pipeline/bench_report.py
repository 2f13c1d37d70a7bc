"""The benchmark's table: step, baseline s, pipeline s, ratio, rows/s, peak MB (medians over repetitions)."""

from __future__ import annotations

from collections.abc import Callable

BUDGET_MS_PER_RECORD = 100.0
TARGET_RATIO = 1.5
_ASSET_STEPS = {"aggregate": "daily_order_aggregates", "score": "user_scores", "rank": "rankings"}
_LABELS = {
    "warm": {"aggregate": "aggregate day D", "score": "score D (8 ranges)", "rank": "rank + replace D"},
    "cold": {"aggregate": "aggregate 30 days", "score": "score D (8 ranges)", "rank": "rank + replace D"},
}
HEADER = ("case", "step", "rows", "baseline s", "pipeline s", "ratio", "rows/s", "peak MB")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def build_table(report, median: Callable) -> tuple[list[tuple], str]:
    """Rows (for tests and docs) and the printed text. Ratio = pipeline / baseline for the same work."""
    rows: list[tuple] = []
    notes: list[str] = []
    for case, results in report.cases.items():
        if not results:
            continue
        base_total = median([sum(t.seconds for t in r.baseline.values()) for r in results])
        for step, label in _LABELS[case].items():
            base = median([r.baseline[step].seconds for r in results])
            pipe = median([r.pipeline.steps.get(_ASSET_STEPS[step], 0.0) for r in results])
            count = results[-1].baseline[step].rows
            rows.append((case, label, count, base, pipe, pipe / base, count / pipe if pipe else None, None))
        checks = median(
            [sum(s for k, s in r.pipeline.steps.items() if k not in _ASSET_STEPS.values()) for r in results]
        )
        rows.append((case, "asset checks on rankings", None, None, checks, None, None, None))
        work = median([sum(r.pipeline.steps.values()) for r in results])
        ranked = results[-1].ranked
        rows.append((case, "batch work (all steps)", ranked, base_total, work, work / base_total, None, None))
        runs = median([r.pipeline.runs_seconds for r in results])
        rows.append(
            (case, "Dagster runs, start to end", ranked, base_total, runs, runs / base_total, None, None)
        )
        process = median([r.pipeline.process_seconds for r in results])
        peak = median([r.pipeline.peak_mb for r in results])
        rows.append(
            (case, "process start to exit", ranked, base_total, process, process / base_total, None, peak)
        )
        per_range = {}
        for key in results[-1].pipeline.ranges:
            per_range[key] = (
                results[-1].pipeline.ranges[key][0],
                median([r.pipeline.ranges[key][1] for r in results if key in r.pipeline.ranges]),
            )
        notes.append(
            f"{case}: per-range scoring (rows, s): "
            + ", ".join(f"{key} {n:,} {s:.2f}" for key, (n, s) in per_range.items())
        )
        ms = work * 1000 / report.users
        notes.append(
            f"{case}: {ms:.3f} ms per record (batch work / {report.users:,} orders of day D; budget "
            f"{BUDGET_MS_PER_RECORD:.0f} ms: {BUDGET_MS_PER_RECORD / ms:,.0f}x under); whole process "
            f"{process * 1000 / report.users:.3f} ms per record"
        )
    reps = {case: len(results) for case, results in report.cases.items()}
    lines = [
        f"ranking-pipeline bench: {report.users:,} users, {report.users * 31:,} orders, database "
        f"{report.database}; medians of {reps['warm']} warm and {reps['cold']} cold run(s); rankings "
        "identical in every run (rank, user_id, score, order_count)",
        "warm = W(D)'s other 29 days already aggregated; cold = all 30 aggregate days missing; "
        f"target ratio <= {TARGET_RATIO}",
        "  ".join(f"{h:>26}" if i == 1 else f"{h:>11}" for i, h in enumerate(HEADER)),
    ]
    for case, label, count, base, pipe, ratio, rate, peak in rows:
        lines.append(
            "  ".join(
                [
                    f"{case:>11}",
                    f"{label:>26}",
                    f"{_fmt(count, ',d'):>11}",
                    f"{_fmt(base, '.2f'):>11}",
                    f"{_fmt(pipe, '.2f'):>11}",
                    f"{_fmt(ratio, '.2f'):>11}",
                    f"{_fmt(rate, ',.0f'):>11}",
                    f"{_fmt(peak, ',.0f'):>11}",
                ]
            )
        )
    return rows, "\n".join([*lines, *notes])
