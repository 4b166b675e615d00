"""``explain_model``: attributions → localization → statistics → figures + explain.md + metrics."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from scipy import stats as sps
from torch import nn

from ecgml.errors import EcgmlError
from ecgml.explain import figures
from ecgml.explain.attribution import compute_attributions, randomized_copy
from ecgml.explain.localization import (
    localize_beats,
    mean_profile,
    r_positions,
    saliency_profiles,
    valid_mask,
    valid_spans,
)
from ecgml.explain.regions import (
    REGIONS,
    delineate_medians,
    fixed_bounds,
    median_beat,
    region_bounds,
    t_wave_end,
)
from ecgml.explain.report import ReportContext, SanityResult, render_report, write_report
from ecgml.explain.stats import TESTS, class_shift, group_statistics, primary_focus

log = logging.getLogger(__name__)
ID_COLUMNS = ("patient_id", "beat_id", "split", "group", "y_true", "y_prob", "y_pred")
CLASS_KEYS = {1: "positive", 0: "negative"}


def as_dict(cfg: Mapping[str, Any] | DictConfig | None) -> dict[str, Any]:
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def class_names(predictions: pd.DataFrame) -> dict[int, str]:
    names = {1: "positive", 0: "negative"}
    if "group" in predictions.columns:
        for label in (0, 1):
            groups = predictions.loc[predictions["y_true"] == label, "group"]
            if len(groups):
                names[label] = str(groups.mode().iat[0])
    return names


def _check_inputs(beats: np.ndarray, predictions: pd.DataFrame) -> None:
    if beats.ndim != 2:
        raise EcgmlError(f"explain: beats must be (n, length), got shape {beats.shape}")
    if len(beats) != len(predictions):
        raise EcgmlError(
            f"explain: {len(beats)} beats but {len(predictions)} prediction rows: pass the test "
            "predictions in the order of the beats"
        )
    if "y_true" not in predictions.columns:
        raise EcgmlError("explain: predictions need a y_true column (predictions.csv format)")


def select_beats(predictions: pd.DataFrame, subset: str) -> np.ndarray:
    keep = np.ones(len(predictions), dtype=bool)
    if subset == "correct" and "y_pred" in predictions.columns:
        keep = (predictions["y_pred"] == predictions["y_true"]).to_numpy()
    return np.flatnonzero(keep)


def beat_bounds(
    beats: np.ndarray,
    valid: np.ndarray,
    r: np.ndarray,
    keys: np.ndarray,
    fs: float,
    regions_cfg: Mapping[str, Any],
) -> tuple[list[dict[str, Any]], dict[Any, dict[str, Any]]]:
    """Region boundaries for each beat from the median beat of its key (class or patient)."""
    unique = list(dict.fromkeys(keys.tolist()))
    masked = np.where(valid, beats, np.nan)
    aligned, r0 = figures.align_on_r(masked, r)
    aligned_valid = np.isfinite(aligned)
    medians = [
        median_beat(np.nan_to_num(aligned[keys == k]), aligned_valid[keys == k]) for k in unique
    ]
    ends = [
        (np.flatnonzero(np.isfinite(m))[-1] - r0) * 1000.0 / fs if np.isfinite(m).any() else 0.0
        for m in medians
    ]
    if regions_cfg.get("source", "class_median") == "fixed":
        per_key = {k: fixed_bounds(regions_cfg, end) for k, end in zip(unique, ends, strict=True)}
    else:
        fiducials = delineate_medians(
            medians, [r0] * len(medians), fs, int(regions_cfg.get("tiles", 8))
        )
        per_key = {}
        for i, k in enumerate(unique):
            found = fiducials.iloc[i].to_dict()
            found["t_end"] = t_wave_end(medians[i], r0, fs, found.get("t_peak", np.nan))
            per_key[k] = region_bounds(found, regions_cfg, ends[i])
    return [per_key[k] for k in keys.tolist()], per_key


def regions_for(
    x: np.ndarray,
    valid: np.ndarray,
    r: np.ndarray,
    pred: pd.DataFrame,
    fs: float,
    regions_cfg: Mapping[str, Any],
) -> tuple[list[dict[str, Any]], dict[Any, dict[str, Any]]]:
    """Per-beat region boundaries (by class or patient median) and the per-class ones."""
    if len(x) == 0:
        return [], {}
    labels = pred["y_true"].to_numpy()
    bounds, class_bounds = beat_bounds(x, valid, r, labels, fs, regions_cfg)
    if regions_cfg.get("source") == "patient_median" and "patient_id" in pred.columns:
        patients = pred["patient_id"].astype(str).to_numpy()
        bounds, _ = beat_bounds(x, valid, r, patients, fs, regions_cfg)
    return bounds, class_bounds


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < 3 or np.ptp(a[both]) == 0 or np.ptp(b[both]) == 0:
        return float("nan")
    return float(sps.spearmanr(a[both], b[both]).statistic)


def _top_region(localized: pd.DataFrame) -> str:
    means = localized[[f"mass_{name}" for name in REGIONS]].mean()
    return str(means.idxmax()).removeprefix("mass_") if len(localized) else "none"


def sanity_check(
    model: nn.Module,
    beats: np.ndarray,
    profiles: np.ndarray,
    spans: np.ndarray,
    r: np.ndarray,
    bounds: list[dict[str, Any]],
    cfg: Mapping[str, Any],
    fs: float,
    smooth: int,
) -> tuple[SanityResult, np.ndarray | None, np.ndarray]:
    """Same attribution on a re-initialized copy; similarity of the saliency profiles."""
    options = cfg.get("sanity") or {}
    result = SanityResult(max_similarity=float(options.get("max_similarity", 0.5)))
    rng = np.random.default_rng(int(cfg.get("seed", 0)))
    n = min(len(beats), int(options.get("max_beats", 512)))
    rows = np.sort(rng.choice(len(beats), size=n, replace=False)) if n else np.zeros(0, int)
    if not options.get("enabled", True) or n == 0:
        result.note = "Sanity check switched off." if n else "No beats to check."
        return result, None, rows
    random_model = randomized_copy(model, seed=int(cfg.get("seed", 0)) + 1)
    attributions = compute_attributions(random_model, beats[rows], cfg, fs, progress=False)
    random_profiles = saliency_profiles(attributions, spans[rows], smooth)
    trained = profiles[rows]
    result.n_beats = n
    result.profile_similarity = spearman(mean_profile(trained), mean_profile(random_profiles))
    per_beat = [spearman(a, b) for a, b in zip(trained, random_profiles, strict=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result.beat_similarity = float(np.nanmedian(per_beat)) if per_beat else float("nan")
    subset_bounds = [bounds[i] for i in rows]
    result.trained_primary = _top_region(localize_beats(trained, r[rows], fs, subset_bounds))
    result.random_primary = _top_region(localize_beats(random_profiles, r[rows], fs, subset_bounds))
    return result, random_profiles, rows


def metrics_from(
    table: pd.DataFrame, stats: Any, shift: float, sanity: SanityResult
) -> dict[str, float]:
    out: dict[str, float] = {"explain/n_beats": float(len(table)), "explain/shift_ms": shift}
    summary = stats.summary
    for label, key in CLASS_KEYS.items():
        for column in ("peak_ms", "peak_saliency", "segment_start_ms", "segment_end_ms"):
            for moment in ("mean", "sd"):
                name = f"{column}_{moment}"
                found = name in summary.columns and label in summary.index
                out[f"explain/{name.replace(column, f'{column}_{key}')}"] = (
                    float(summary.loc[label, name]) if found else float("nan")
                )
        part = table[table["y_true"] == label]
        for region in REGIONS:
            column = f"mass_{region}"
            out[f"explain/{region.lower()}_region_fraction_{key}"] = (
                float(part[column].mean()) if len(part) else float("nan")
            )
    for test in TESTS:
        out[f"explain/{test}_p"] = stats.p(test)
    out["explain/sanity_similarity"] = sanity.profile_similarity
    out["explain/sanity_beat_similarity"] = sanity.beat_similarity
    out["explain/sanity_passed"] = float(sanity.passed) if sanity.n_beats else float("nan")
    return out


@dataclass
class _Selection:
    """The analysed beats (padding spans, R positions) and their prediction rows."""

    x: np.ndarray
    pred: pd.DataFrame
    spans: np.ndarray
    valid: np.ndarray
    r: np.ndarray
    r_source: str


def _select(
    beats: np.ndarray, predictions: pd.DataFrame, r_index: int | None, subset: str
) -> _Selection:
    rows = select_beats(predictions, subset)
    x, pred = beats[rows], predictions.iloc[rows].reset_index(drop=True)
    spans = valid_spans(x)
    store_r = pred["r_index"].to_numpy(float) if "r_index" in pred.columns else None
    r, r_source = r_positions(x, spans, r_index, store_r)
    return _Selection(x, pred, spans, valid_mask(spans, x.shape[1]), r, r_source)


def _saliency_table(
    sel: _Selection, profiles: np.ndarray, bounds: Any, fs: float, threshold: float
) -> pd.DataFrame:
    """One row per analysed beat: ids, peak, main segment, region masses (``saliency.csv``)."""
    localized = localize_beats(profiles, sel.r, fs, bounds, threshold)
    ids = sel.pred[[c for c in ID_COLUMNS if c in sel.pred.columns]].reset_index(drop=True)
    table = pd.concat([ids, localized], axis=1)
    if "y_pred" in table.columns:
        correct = table["y_pred"] == sel.pred["y_true"].to_numpy()
        table.insert(table.columns.get_loc("y_pred") + 1, "correct", correct)
    return table


def _guarded_sanity(
    model: nn.Module,
    sel: _Selection,
    profiles: np.ndarray,
    bounds: Any,
    cfg: Mapping[str, Any],
    fs: float,
    smooth: int,
) -> tuple[SanityResult, np.ndarray | None, np.ndarray | None]:
    try:
        return sanity_check(model, sel.x, profiles, sel.spans, sel.r, bounds, cfg, fs, smooth)
    except Exception as err:  # the check must never cost the run its other results
        log.warning("explain: sanity check failed: %s", err)
        return SanityResult(note=f"Failed: {err}."), None, None


def _localization_settings(cfg: Mapping[str, Any], fs: float) -> tuple[int, float]:
    """(smoothing window in samples, main-segment threshold) from ``explain.localization``."""
    options = cfg.get("localization") or {}
    smooth = max(1, round(float(options.get("smooth_ms", 20)) * fs / 1000))
    threshold = float(options.get("segment_threshold", 0.5))
    if not 0 < threshold <= 1:  # a range: the schema (ecgml.schemas) checks only the type
        raise EcgmlError(f"explain.localization.segment_threshold={threshold} must be in (0, 1]")
    return smooth, threshold


def explain_model(
    model: nn.Module,
    beats: np.ndarray,
    predictions: pd.DataFrame,
    fs: float,
    r_index: int | None,
    cfg: Mapping[str, Any] | DictConfig,
    out_dir: Path,
) -> dict[str, float]:
    """Saliency artifacts for the test beats in ``out_dir``; flat ``explain/…`` metrics back.

    Writes ``saliency.csv``, ``explain.md``, ``overlay.png``, ``examples.png`` and
    ``profiles.png``. Degenerate input (one class, few beats) gives NaN statistics with a note.
    """
    start_time = time.perf_counter()
    cfg = as_dict(cfg)
    beats = np.asarray(beats, dtype=np.float32)
    predictions = predictions.reset_index(drop=True)
    _check_inputs(beats, predictions)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    names = class_names(predictions)
    subset = str(cfg.get("subset", "all"))
    sel = _select(beats, predictions, r_index, subset)
    smooth, threshold = _localization_settings(cfg, fs)
    regions_cfg = cfg.get("regions") or {}
    if len(sel.x) == 0:
        notes.append("no beats to analyse: every statistic is NaN")
        attributions = np.zeros_like(sel.x)
    else:
        attributions = compute_attributions(model, sel.x, cfg, fs)
    profiles = saliency_profiles(attributions, sel.spans, smooth)
    bounds, class_bounds = regions_for(sel.x, sel.valid, sel.r, sel.pred, fs, regions_cfg)
    table = _saliency_table(sel, profiles, bounds, fs, threshold)
    table.to_csv(out_dir / "saliency.csv", index=False)
    stats = group_statistics(table if len(table) else _empty_table())
    shift = class_shift(stats.summary)
    focus = primary_focus(table if len(table) else _empty_table())
    sanity, random_profiles, sanity_rows = _guarded_sanity(
        model, sel, profiles, bounds, cfg, fs, smooth
    )
    _write_figures(
        out_dir,
        cfg,
        sel.x,
        profiles,
        sel.r,
        table,
        names,
        class_bounds,
        fs,
        random_profiles,
        sanity_rows,
        notes,
    )
    ctx = ReportContext(
        method=str(cfg.get("method", "saliency")),
        n_test_beats=len(beats),
        subset=subset,
        r_source=sel.r_source,
        names=names,
        class_bounds=class_bounds,
        regions_source=_describe_regions(regions_cfg, class_bounds),
        notes=notes,
    )
    write_report(out_dir / "explain.md", render_report(ctx, table, stats, shift, focus, sanity))
    metrics = metrics_from(table, stats, shift, sanity)
    metrics["explain/seconds"] = time.perf_counter() - start_time
    write_stats(out_dir / STATS_FILE, metrics)
    return metrics


#: The saliency statistics of one explanation, one row each (``statistic``, ``value``): a table
#: beside ``explain.md`` rather than dozens of single-value metric charts in the run.
STATS_FILE = "stats.csv"


def write_stats(path: Path, metrics: dict[str, float]) -> None:
    """``metrics`` (``explain/<statistic>``) as ``stats.csv``."""
    names = [k.removeprefix("explain/") for k in metrics]
    pd.DataFrame({"statistic": names, "value": list(metrics.values())}).to_csv(path, index=False)


def read_stats(path: Path) -> dict[str, float]:
    """``stats.csv`` back as ``explain/<statistic>`` values."""
    frame = pd.read_csv(path)
    return {
        f"explain/{k}": float(v) for k, v in zip(frame["statistic"], frame["value"], strict=True)
    }


def _empty_table() -> pd.DataFrame:
    columns = ["y_true", "peak_ms", "peak_saliency", "segment_start_ms", "segment_end_ms"]
    columns += [f"mass_{name}" for name in REGIONS] + ["primary_region", "peak_region"]
    return pd.DataFrame(columns=columns)


def _describe_regions(regions_cfg: Mapping[str, Any], class_bounds: Mapping[Any, Any]) -> str:
    source = regions_cfg.get("source", "class_median")
    used = sorted({str(b.get("regions_source", "")) for b in class_bounds.values()})
    if source == "fixed":
        return "fixed windows relative to R (explain.regions.fixed_ms)"
    what = "each class's" if source == "class_median" else "each patient's"
    return (
        f"NeuroKit2 dwt delineation of {what} median beat (T widened to ±"
        f"{regions_cfg.get('min_t_half_ms', 80)} ms around its peak; missing or out-of-order "
        f"fiducials from the fixed windows); per class: {', '.join(used) or 'none'}"
    )


def _write_figures(
    out_dir: Path,
    cfg: Mapping[str, Any],
    x: np.ndarray,
    profiles: np.ndarray,
    r: np.ndarray,
    table: pd.DataFrame,
    names: Mapping[Any, str],
    class_bounds: Mapping[Any, Mapping[str, Any]],
    fs: float,
    random_profiles: np.ndarray | None,
    sanity_rows: np.ndarray | None,
    notes: list[str],
) -> None:
    """overlay.png, examples.png, profiles.png; a failing figure becomes a note."""
    if len(x) == 0:
        notes.append("no figures: no beats")
        return
    options = cfg.get("figures") or {}
    if not options.get("enabled", True):
        return
    dpi = int(options.get("dpi", 120))
    labels = table["y_true"].to_numpy()
    try:
        figures.overlay_figure(
            x, profiles, r, labels, names, class_bounds, fs, out_dir / "overlay.png", dpi
        )
        picks = figures.pick_examples(table, int(options.get("examples_per_class", 3)))
        figures.examples_figure(
            x, profiles, r, table, picks, names, fs, out_dir / "examples.png", dpi
        )
        figures.profiles_figure(
            _profile_curves(profiles, r, labels, names, fs, random_profiles, sanity_rows),
            out_dir / "profiles.png",
            "mean saliency profile per class (dashed: randomized-weights model)",
            dpi,
        )
    except Exception as err:  # figures must never cost the run its statistics
        log.warning("explain: figure failed: %s", err)
        notes.append(f"a figure failed: {err}")


def _profile_curves(
    profiles: np.ndarray,
    r: np.ndarray,
    labels: np.ndarray,
    names: Mapping[Any, str],
    fs: float,
    random_profiles: np.ndarray | None,
    sanity_rows: np.ndarray | None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    curves = {}
    for label in sorted(np.unique(labels), reverse=True):
        aligned, r0 = figures.align_on_r(profiles[labels == label], r[labels == label])
        t_ms = (np.arange(aligned.shape[1]) - r0) * 1000.0 / fs
        curves[str(names.get(label, label))] = (t_ms, mean_profile(aligned))
    if random_profiles is not None and sanity_rows is not None and len(sanity_rows):
        aligned, r0 = figures.align_on_r(random_profiles, r[sanity_rows])
        t_ms = (np.arange(aligned.shape[1]) - r0) * 1000.0 / fs
        curves["randomized weights (all classes)"] = (t_ms, mean_profile(aligned))
    return curves
