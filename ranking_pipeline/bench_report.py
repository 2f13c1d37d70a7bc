"""The benchmark's table, headline figures and verdicts (medians over repetitions).

Columns: step, rows, baseline s, pipeline s, ratio (pipeline / baseline), floor s, x floor (pipeline /
floor), rows/s (pipeline; the floor's own), base rows/s (the baseline's), s/M users (pipeline or floor
seconds per million users: flat or falling across sizes means linear or better), peak MB. The history case
has no baseline of its own: its rows compare the pipeline with history against the pipeline's nightly case
without it (the "baseline s" column holds the latter).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ranking_pipeline.lib.ranges import slot_for_key

BUDGET_MS_PER_RECORD = 100.0
BATCH_BUDGET_SECONDS = 30 * 60  # the nightly batch's limit (BATCH-001): what the extrapolation fits into
_ASSET_STEPS = {"aggregate": "daily_order_aggregates", "score": "user_scores", "rank": "rankings"}
_LABELS = {
    "nightly": {"aggregate": "aggregate day D", "score": "score D (8 ranges)", "rank": "rank + replace D"},
    "cold": {"aggregate": "aggregate 30 days", "score": "score D (8 ranges)", "rank": "rank + replace D"},
}
_LABELS["history"] = _LABELS["nightly"]
HEADER = (
    "case",
    "step",
    "rows",
    "baseline s",
    "pipeline s",
    "ratio",
    "floor s",
    "x floor",
    "rows/s",
    "base rows/s",
    "s/M users",
    "peak MB",
)
_WIDTHS = (8, 27, 11, 10, 10, 7, 8, 7, 10, 11, 9, 7)


@dataclass(frozen=True)
class Target:
    """A target of issue 12 or 17: ``figure`` (a key of summarize's result) must stay under ``limit``."""

    description: str
    figure: str
    limit: float
    users: tuple[int, ...]  # the sizes the target is set for; at other sizes it is printed for reference
    strict: bool = False  # True: figure < limit; False: figure <= limit


TARGETS = (
    Target("nightly batch work <= 0.6 x baseline", "nightly_work_ratio", 0.6, (1_000_000, 10_000_000)),
    Target("nightly batch work <= 0.8 x baseline", "nightly_work_ratio", 0.8, (100_000,)),
    Target("nightly whole process <= 1.0 x baseline", "nightly_process_ratio", 1.0, (1_000_000,)),
    Target("cold batch work <= 1.0 x baseline", "cold_work_ratio", 1.0, (1_000_000,)),
    Target("nightly batch work <= 2 x floor", "nightly_work_vs_floor", 2.0, (100_000, 1_000_000)),
    Target("nightly batch work, history / none <= 1.1", "history_ratio", 1.1, (100_000, 1_000_000)),
    Target("nightly whole process < 600 s", "nightly_process_seconds", 600.0, (10_000_000,), strict=True),
    Target("peak RSS of the batch process < 300 MB", "peak_mb", 300.0, (1_000_000, 10_000_000), strict=True),
)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _work(result) -> float:
    """The pipeline's batch work: every step of its runs (the assets and the checks on rankings)."""
    return sum(result.pipeline.steps.values())


def _checks(result) -> float:
    return sum(s for key, s in result.pipeline.steps.items() if key not in _ASSET_STEPS.values())


def summarize(report, median: Callable) -> dict[str, float]:
    """The medians the table and the verdicts are made of (a key is missing when its case did not run).

    Per case: ``<case>_<step>_seconds`` (aggregate, score, rank, checks, work, runs, process),
    ``<case>_peak_mb`` and, with a baseline, ``<case>_baseline_seconds`` and the ratios; then the floor
    (``floor_*``, ``nightly_work_vs_floor``), the history (``history_ratio``) and ``peak_mb`` (the
    largest of the cases' peaks)."""
    figures: dict[str, float] = {}
    for case, results in report.cases.items():
        if not results:
            continue
        for step, asset in _ASSET_STEPS.items():
            figures[f"{case}_{step}_seconds"] = median([r.pipeline.steps.get(asset, 0.0) for r in results])
        figures[f"{case}_checks_seconds"] = median([_checks(r) for r in results])
        figures[f"{case}_work_seconds"] = median([_work(r) for r in results])
        figures[f"{case}_runs_seconds"] = median([r.pipeline.runs_seconds for r in results])
        figures[f"{case}_process_seconds"] = median([r.pipeline.process_seconds for r in results])
        figures[f"{case}_peak_mb"] = median([r.pipeline.peak_mb for r in results])
        if case != "history":
            baseline = median([sum(t.seconds for t in r.baseline.values()) for r in results])
            figures[f"{case}_baseline_seconds"] = baseline
            figures[f"{case}_work_ratio"] = figures[f"{case}_work_seconds"] / baseline
            figures[f"{case}_process_ratio"] = figures[f"{case}_process_seconds"] / baseline
    floors = [r.floor for r in report.cases.get("nightly", []) if r.floor is not None]
    if floors:
        figures["floor_read_seconds"] = median([f.read.seconds for f in floors])
        figures["floor_write_seconds"] = median([f.write.seconds for f in floors])
        figures["floor_seconds"] = median([f.seconds for f in floors])
        figures["nightly_work_vs_floor"] = figures["nightly_work_seconds"] / figures["floor_seconds"]
    if "history_work_seconds" in figures and "nightly_work_seconds" in figures:
        figures["history_ratio"] = figures["history_work_seconds"] / figures["nightly_work_seconds"]
        if "floor_seconds" in figures:
            figures["history_work_vs_floor"] = figures["history_work_seconds"] / figures["floor_seconds"]
    peaks = [value for key, value in figures.items() if key.endswith("_peak_mb")]
    if peaks:
        figures["peak_mb"] = max(peaks)
    figures.update(_growth_figures(figures, report.users))
    return figures


def _growth_figures(figures: dict[str, float], users: int) -> dict[str, float]:
    """Seconds per million users of every step (``<figure>_per_m_users``) and, per case, the user count
    whose batch would take 30 minutes here (``<case>_budget_users``), extrapolated linearly from this run:
    the process's part that does not grow with N (process - batch work: start-up, Dagster's run set-up) is
    held fixed and the batch work scaled with N. An extrapolation, not a measurement."""
    millions = users / 1_000_000
    growth = {
        f"{key}_per_m_users": value / millions
        for key, value in figures.items()
        if key.endswith("_seconds") and not key.startswith("floor_")
    }
    if "floor_seconds" in figures:
        growth["floor_seconds_per_m_users"] = figures["floor_seconds"] / millions
    for case in ("nightly", "cold"):
        work, process = figures.get(f"{case}_work_seconds"), figures.get(f"{case}_process_seconds")
        if work and process:
            fixed = max(process - work, 0.0)
            growth[f"{case}_budget_users"] = users * (BATCH_BUDGET_SECONDS - fixed) / work
    return growth


def verdicts(figures: dict[str, float], users: int) -> list[str]:
    """One line per target: met, NOT MET, or for reference when the target is set for another size."""
    lines = []
    for target in TARGETS:
        value = figures.get(target.figure)
        sizes = " and ".join(f"{size:,}" for size in target.users)
        if value is None:
            lines.append(f"  not run   {target.description} (at {sizes} users): not measured in this run")
            continue
        met = value < target.limit if target.strict else value <= target.limit
        if users in target.users:
            status = "met" if met else "NOT MET"
            lines.append(f"  {status:<8}  {target.description} at {users:,} users: {value:.2f}")
        else:
            lines.append(
                f"  reference {target.description} (set for {sizes} users): {value:.2f} at {users:,} users"
            )
    return lines


def _case_rows(
    case: str, results: list, median: Callable, figures: dict[str, float], users: int
) -> list[tuple]:
    """The rows of one case: its three asset steps, the checks, batch work, Dagster runs, the process.

    Nightly and cold compare with the baseline; history compares with the nightly case's pipeline."""
    with_history = case == "history"
    floor = figures.get("floor_seconds") if case in ("nightly", "history") else None
    rows: list[tuple] = []
    for step, label in _LABELS[case].items():
        pipe = figures[f"{case}_{step}_seconds"]
        if with_history:
            count, base = None, figures.get(f"nightly_{step}_seconds")
        else:
            count = results[-1].baseline[step].rows
            base = median([r.baseline[step].seconds for r in results])
        rate = count / pipe if count is not None and pipe else None
        base_rate = count / base if count is not None and base and not with_history else None
        per_m = pipe * 1_000_000 / users
        rows.append(
            (case, label, count, base, pipe, _ratio(pipe, base), None, None, rate, base_rate, per_m, None)
        )
    ranked = results[-1].ranked
    for key, label, count in (
        ("checks", "asset checks on rankings", None),
        ("work", "batch work (all steps)", ranked),
        ("runs", "Dagster runs, start to end", ranked),
        ("process", "process start to exit", ranked),
    ):
        pipe = figures[f"{case}_{key}_seconds"]
        if with_history:
            base = figures.get(f"nightly_{key}_seconds")
        else:
            base = None if key == "checks" else figures[f"{case}_baseline_seconds"]
        floor_cells = (floor, _ratio(pipe, floor)) if key == "work" else (None, None)
        peak = figures[f"{case}_peak_mb"] if key == "process" else None
        per_m = pipe * 1_000_000 / users
        rows.append(
            (case, label, count, base, pipe, _ratio(pipe, base), *floor_cells, None, None, per_m, peak)
        )
    return rows


def _floor_rows(last_floor, figures: dict[str, float], users: int) -> list[tuple]:
    """The floor's rows: its read, its write (medians) and their sum; rows from the last repetition."""
    millions = users / 1_000_000
    no_times = (None, None, None)  # a floor has no baseline, pipeline or ratio
    rows = []
    for label, count, seconds in (
        ("read D's orders once", last_floor.read.rows, figures["floor_read_seconds"]),
        ("write D's rankings once", last_floor.write.rows, figures["floor_write_seconds"]),
        ("floor (read + write)", last_floor.write.rows, figures["floor_seconds"]),
    ):
        rate = _ratio(count, seconds) if label != "floor (read + write)" else None
        rows.append(("floor", label, count, *no_times, seconds, None, rate, None, seconds / millions, None))
    return rows


def _notes(report, case: str, results: list, median: Callable, figures: dict[str, float]) -> list[str]:
    per_range = {}
    # in user-ID order: range_1_of_8 first
    for key in sorted(results[-1].pipeline.ranges, key=lambda name: slot_for_key(name).number):
        per_range[key] = (
            results[-1].pipeline.ranges[key][0],
            median([r.pipeline.ranges[key][1] for r in results if key in r.pipeline.ranges]),
        )
    last = results[-1].pipeline
    notes = [
        f"{case}: per-range scoring (rows, s): "
        + (", ".join(f"{key} {n:,} {s:.2f}" for key, (n, s) in per_range.items()) or "none logged")
        + f"; {last.ranges_from_previous} of {len(last.ranges)} ranges scored from D-1's scores"
    ]
    ms = figures[f"{case}_work_seconds"] * 1000 / report.users
    notes.append(
        f"{case}: {ms:.3f} ms per record (batch work / {report.users:,} orders of day D; budget "
        f"{BUDGET_MS_PER_RECORD:.0f} ms: {BUDGET_MS_PER_RECORD / ms:,.0f}x under); whole process "
        f"{figures[f'{case}_process_seconds'] * 1000 / report.users:.3f} ms per record"
    )
    return notes


_FORMATS = ("", "", ",d", ".2f", ".2f", ".2f", ".3f", ".2f", ",.0f", ",.0f", ".2f", ",.0f")


def _gigabytes(size: int) -> str:
    return f"{size / 1024**3:.1f} GB"


def _scale_notes(report, figures: dict[str, float]) -> list[str]:
    """The database's disk, the seeding, the bench process's memory and the 30-minute extrapolation."""
    seeding = (
        "reused (--reuse-database), not seeded"
        if report.seed_seconds is None
        else f"seeded in {report.seed_seconds:.0f} s"
    )
    notes = [
        f"disk: the database took {_gigabytes(report.disk_seeded_bytes)} after seeding ({seeding}), at most "
        f"{_gigabytes(report.disk_peak_bytes)} after a timed side (pg_database_size); the bench process's "
        f"own peak RSS {report.bench_peak_mb:,.0f} MB"
    ]
    loads = [r.load_average for case in ("nightly", "cold") for r in report.cases.get(case, [])]
    if loads:
        notes.append(
            f"machine: 1-minute load average up to {max(loads):.1f} after a timed side, on {os.cpu_count()} "
            "cores (above the core count, other work competed with the benchmark)"
        )
    for case in ("nightly", "cold"):
        budget_users = figures.get(f"{case}_budget_users")
        if budget_users is not None:
            notes.append(
                f"{case}: extrapolated, not measured: about {budget_users:,.0f} users would fit the "
                f"{BATCH_BUDGET_SECONDS // 60}-minute budget here (linear in N from this run's batch work "
                f"{figures[f'{case}_work_seconds_per_m_users']:.2f} s per million users, plus the fixed "
                f"{max(figures[f'{case}_process_seconds'] - figures[f'{case}_work_seconds'], 0):.2f} s of "
                "the process)"
            )
    return notes


def _format_row(row: tuple) -> str:
    case, label, *figures = row
    cells = [f"{case:>{_WIDTHS[0]}}", f"{label:>{_WIDTHS[1]}}"]
    cells += [
        f"{_fmt(value, spec):>{width}}"
        for value, spec, width in zip(figures, _FORMATS[2:], _WIDTHS[2:], strict=True)
    ]
    return "  ".join(cells)


def build_table(report, median: Callable) -> tuple[list[tuple], str]:
    """Rows (for tests and docs) and the printed text; also sets ``report.figures`` (summarize's medians)."""
    figures = summarize(report, median)
    report.figures = figures
    rows: list[tuple] = []
    notes: list[str] = []
    for case, results in report.cases.items():
        if not results:
            continue
        rows.extend(_case_rows(case, results, median, figures, report.users))
        notes.extend(_notes(report, case, results, median, figures))
        floors = [r.floor for r in results if r.floor is not None]
        if floors:
            rows.extend(_floor_rows(floors[-1], figures, report.users))
            notes.append(
                f"floor: read = count(*), sum(amount) of D's {floors[-1].read.rows:,} completed orders "
                f"(plan: {floors[-1].read_plan}); write = INSERT of D's {floors[-1].write.rows:,} ranked "
                "rows into an empty table with PRIMARY KEY (ranking_date, user_id), dropped afterwards"
            )
    if report.history is not None:
        history = report.history
        dropped = [r.history_dates_dropped for r in report.cases["history"]]
        notes.append(
            f"history: {len(history.days)} older business dates ({history.days[-1]} .. {history.days[0]}), "
            f"{history.score_rows:,} user_scores and {history.ranking_rows:,} rankings rows copied from D "
            f"in {history.seconds:.1f} s, each date in its own partition; RANKING_RETENTION_DAYS="
            f"{history.retention_days} for the history runs, so the timed run drops the oldest date as "
            f"every night does (dates dropped per run: {', '.join(map(str, dropped))}; restored untimed)"
        )
    reps = ", ".join(f"{len(results)} {case}" for case, results in report.cases.items() if results)
    lines = [
        f"ranking-pipeline bench: {report.users:,} users, {report.users * 31:,} orders, database "
        f"{report.database}; medians of {reps} run(s); rankings identical in every run (rank, user_id, "
        "score, order_count)",
        "nightly = D-30 .. D-1 aggregated and D-1 ranked by the pipeline beforehand (untimed); cold = no "
        "aggregates; ratio = pipeline / baseline; x floor = pipeline / floor (read D's orders + write D's "
        "rankings once); history rows: 'baseline s' = the pipeline's nightly figure without the history, "
        "ratio = with / without",
        "  ".join(f"{h:>{w}}" for h, w in zip(HEADER, _WIDTHS, strict=True)),
    ]
    lines.extend(_format_row(row) for row in rows)
    lines.extend(_scale_notes(report, figures))
    verdict_lines = ["verdicts (issue 12 and 17 targets):", *verdicts(figures, report.users)]
    return rows, "\n".join([*lines, *notes, *verdict_lines])
