"""``explain.md``: the localization statistics as Markdown (the study's Table 3 included)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgml.explain.regions import BOUNDARIES, REGIONS
from ecgml.explain.stats import HEADLINE, GroupStats


@dataclass
class SanityResult:
    """Trained vs randomized-weights model on the same beats."""

    profile_similarity: float = float("nan")
    beat_similarity: float = float("nan")
    n_beats: int = 0
    max_similarity: float = 0.5
    trained_primary: str = "none"
    random_primary: str = "none"
    note: str = ""

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.profile_similarity)) and (
            self.profile_similarity < self.max_similarity
        )


@dataclass
class ReportContext:
    method: str
    n_test_beats: int
    subset: str
    r_source: str
    names: Mapping[Any, str]
    class_bounds: Mapping[Any, Mapping[str, Any]]
    regions_source: str
    notes: list[str] = field(default_factory=list)


def _pm(summary: pd.DataFrame, label: Any, column: str, digits: int = 1) -> str:
    if label not in summary.index or f"{column}_mean" not in summary.columns:
        return "–"
    mean, sd = summary.loc[label, f"{column}_mean"], summary.loc[label, f"{column}_sd"]
    text = f"{mean:.{digits}f}" if np.isfinite(mean) else "n/a"
    return f"{text} ± {sd:.{digits}f}" if np.isfinite(sd) else text


def _p(value: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _localization_section(
    ctx: ReportContext, table: pd.DataFrame, stats: GroupStats, shift_ms: float
) -> list[str]:
    summary = stats.summary
    labels = list(summary.index)
    lines = [
        f"# Saliency: {' vs '.join(ctx.names.get(c, str(c)) for c in reversed(labels))}",
        "",
        f"Method `{ctx.method}` (Captum) on {len(table)} of {ctx.n_test_beats} test beats "
        f"({ctx.subset}); zero padding removed before analysis; R-peak from {ctx.r_source}; "
        f"ECG regions from {ctx.regions_source}. Times are ms from the R-peak; peak saliency is "
        "the beat's smoothed |attribution| peak over the largest one among the analysed beats.",
        "",
        "## Temporal localization per class (mean ± SD)",
        "",
    ]
    rows = [
        [
            ctx.names.get(c, str(c)),
            str(int(summary.loc[c, "n"])),
            _pm(summary, c, "peak_ms"),
            _pm(summary, c, "peak_saliency", 2),
            f"{_pm(summary, c, 'segment_start_ms')} … {_pm(summary, c, 'segment_end_ms')}",
            _pm(summary, c, "mass_T", 2),
        ]
        for c in reversed(labels)
    ]
    lines += _table(
        ["class", "beats", "peak (ms)", "peak saliency", "main segment (ms)", "T-region mass"],
        rows,
    )
    shift = f"{shift_ms:+.1f} ms" if np.isfinite(shift_ms) else "n/a"
    return [
        *lines,
        "",
        f"Shift of the mean peak location (positive − negative class): **{shift}**.",
    ]


def _tests_section(stats: GroupStats) -> list[str]:
    rows = [
        [
            test + (" (headline)" if HEADLINE[test] == variable else ""),
            variable,
            f"{result.statistic:.3f}" if np.isfinite(result.statistic) else "n/a",
            _p(result.p),
            result.note or "",
        ]
        for (test, variable), result in stats.tests.items()
    ]
    return [
        "",
        "## Tests between classes (SciPy)",
        "",
        *_table(["test", "variable", "statistic", "p", "note"], rows),
    ]


def _focus_section(ctx: ReportContext, focus: pd.DataFrame) -> list[str]:
    rows = [
        [
            ctx.names.get(row["y_true"], str(row["y_true"])),
            f"{row['primary_region']}",
            f"{row['mean_mass']:.2f}",
            f"{row['beats_with_this_primary']:.0%}",
            str(row["peak_region_mode"]),
        ]
        for _, row in focus.iloc[::-1].iterrows()
    ]
    header = [
        "class",
        "primary ECG focus",
        "mean mass there",
        "beats with it primary",
        "peak region",
    ]
    return ["", "## Primary ECG focus per class (Table 3)", "", *_table(header, rows)]


def _regions_section(ctx: ReportContext) -> list[str]:
    rows = [
        [
            ctx.names.get(c, str(c)),
            *(f"{bounds[BOUNDARIES[k]]:.0f}–{bounds[BOUNDARIES[k + 1]]:.0f}" for k in range(6)),
            str(bounds.get("regions_source", "")),
        ]
        for c, bounds in sorted(
            ctx.class_bounds.items(), key=lambda item: str(item[0]), reverse=True
        )
    ]
    return ["", "## ECG regions (ms from R)", "", *_table(["class", *REGIONS, "source"], rows)]


def _sanity_section(sanity: SanityResult) -> list[str]:
    verdict = "passed" if sanity.passed else "FAILED" if sanity.n_beats else "not run"
    return [
        "",
        "## Sanity check: randomized weights (Adebayo et al.)",
        "",
        f"Spearman similarity of the mean saliency profiles, trained vs re-initialized model, on "
        f"{sanity.n_beats} beats: **{sanity.profile_similarity:.3f}** (median per beat "
        f"{sanity.beat_similarity:.3f}); primary region trained {sanity.trained_primary}, "
        f"randomized {sanity.random_primary}. **Check {verdict}**: a pass requires similarity "
        f"< {sanity.max_similarity:g} (the explanation then depends on what the model learned)"
        + (
            "; this one does not: the localization above may reflect the input rather than the "
            "model, do not report it."
            if sanity.n_beats and not sanity.passed
            else "."
        )
        + (f" {sanity.note}" if sanity.note else ""),
    ]


def render_report(
    ctx: ReportContext,
    table: pd.DataFrame,
    stats: GroupStats,
    shift_ms: float,
    focus: pd.DataFrame,
    sanity: SanityResult,
) -> str:
    """The whole ``explain.md``: localization, tests, Table 3, regions, sanity check, notes."""
    lines = [
        *_localization_section(ctx, table, stats, shift_ms),
        *_tests_section(stats),
        *_focus_section(ctx, focus),
        *_regions_section(ctx),
        *_sanity_section(sanity),
    ]
    notes = [*ctx.notes, *stats.notes]
    if notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in dict.fromkeys(notes))]
    return "\n".join(lines) + "\n"


def write_report(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
