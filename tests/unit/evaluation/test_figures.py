"""Publication figures: bands that cover the curve, the patient as a unit, the calibration
histogram, the decision curve's range, small subgroup cells left out, and no clipped text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from ecgml.errors import EcgmlError
from ecgml.evaluation import ClinicalSettings, patient_bootstrap_indices
from ecgml.evaluation.bootstrap import bootstrap_pr_band, interpolated_precision
from ecgml.evaluation.calibration import plot_reliability
from ecgml.evaluation.figures import plot_calibration, plot_confusion, plot_pr, plot_roc
from ecgml.evaluation.subgroups import plot_subgroups, subgroup_table
from ecgml.evaluation.utility import decision_curve, decision_grid, plot_decision_curve


def scored_beats(
    n_patients: int = 80, seed: int = 0, separation: float = 1.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"p{i:03d}" for i in range(n_patients)], 3)
    y = np.repeat((np.arange(n_patients) % 3 == 0).astype(int), 3)
    scores = 1 / (1 + np.exp(-(separation * (2 * y - 1) + rng.normal(0, 1, y.size))))
    return ids, y, scores


def outside_canvas(fig: Figure) -> dict[str, float]:
    """How far (inches) the figure's drawn content reaches past each edge of its canvas: what
    a plain save would cut off (a title, a label, a legend, a footnote)."""
    canvas_agg = FigureCanvasAgg(fig)  # how save_figure renders it, layout included
    canvas_agg.draw()
    renderer = canvas_agg.get_renderer()
    tight, canvas = fig.get_tightbbox(renderer), fig.bbox_inches
    beyond = {
        "left": canvas.x0 - tight.x0,
        "bottom": canvas.y0 - tight.y0,
        "right": tight.x1 - canvas.x1,
        "top": tight.y1 - canvas.y1,
    }
    return {edge: round(d, 3) for edge, d in beyond.items() if d > 0.01}


def test_interpolated_precision_is_the_pr_curves_upper_envelope() -> None:
    _, y, scores = scored_beats()
    precision, recall, _ = precision_recall_curve(y, scores)
    order = np.argsort(-scores, kind="stable")
    tp, fp = np.cumsum(y[order]), np.cumsum(1 - y[order])
    grid = np.linspace(0, 1, 51)
    ours = interpolated_precision(tp.astype(float), fp.astype(float), float(y.sum()), grid)
    expected = [precision[recall >= r].max() for r in grid]
    np.testing.assert_allclose(ours, expected, atol=1e-12)


def test_pr_band_holds_the_curve_and_narrows_with_more_patients() -> None:
    widths = []
    for n in (45, 450):
        ids, y, scores = scored_beats(n, separation=0.5)
        plan = patient_bootstrap_indices(ids, y, n_resamples=300, seed=1)
        grid, low, high = bootstrap_pr_band(plan, ids, y, scores)
        order = np.argsort(-scores, kind="stable")
        observed = interpolated_precision(
            np.cumsum(y[order]).astype(float), np.cumsum(1 - y[order]).astype(float), y.sum(), grid
        )
        inner = (grid > 0.05) & (grid < 0.95)
        assert np.mean((low <= observed + 1e-9) & (observed <= high + 1e-9)) > 0.9
        widths.append(float(np.mean((high - low)[inner])))
    assert widths[1] < 0.6 * widths[0]


def test_each_figure_draws_what_it_says_without_clipping() -> None:
    ids, y, scores = scored_beats()
    plan = patient_bootstrap_indices(ids, y, n_resamples=100, seed=0)
    pr = plot_pr(y, scores, ids, plan=plan, title="A long title: precision–recall, test beats")
    assert len(pr.axes[0].collections) == 1  # the band
    reliability = plot_reliability(y, scores, np.clip(scores * 0.8, 0, 1), ids, title="Calib")
    assert len(reliability.axes) == 2  # the reliability diagram and its histogram
    assert reliability.axes[1].get_xlabel() == "Predicted probability"
    frame = pd.DataFrame({"patient_id": ids, "y_true": y, "y_prob": scores})
    curve = decision_curve(y, scores, decision_grid(0.01, 0.5), patient_ids=ids, plan=plan)
    assert curve["threshold"].min() == 0.01 and curve["threshold"].max() == 0.5
    assert len(curve) == 50
    figures = {
        "roc": plot_roc(y, scores, ids, plan=plan, title="ROC, test patients (mean)"),
        "pr": pr,
        "confusion": plot_confusion(y, (scores > 0.5).astype(int)),
        "calibration": plot_calibration(y, scores),
        "reliability": reliability,
        "decision_curve": plot_decision_curve(curve, title="Decision curve, test beats"),
        "subgroups": plot_subgroups(
            subgroup_table(frame.assign(center=np.where(ids < "p040", "A", "B")), ["center"], 0.5)
        ),
    }
    for name, fig in figures.items():
        assert outside_canvas(fig) == {}, name


def test_subgroup_figure_leaves_out_small_cells_and_says_so() -> None:
    ids, y, scores = scored_beats(90)
    centers = np.select([ids < "p040", ids < "p086"], ["big-A", "big-B"], "tiny")
    frame = pd.DataFrame({"patient_id": ids, "y_true": y, "y_prob": scores, "center": centers})
    table = subgroup_table(frame, ["center"], 0.5, n_bootstrap=50, min_patients=10)
    assert table.set_index("value")["small"].to_dict() == {
        "big-A": False,
        "big-B": False,
        "tiny": True,
    }
    fig = plot_subgroups(table)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 2 and not any("tiny" in label for label in labels)
    assert "1 cell(s) with fewer than 10 test patients not shown" in fig.get_supxlabel()
    assert outside_canvas(fig) == {}


@pytest.mark.parametrize("bad", [(0.5, 0.1), (0.0, 0.5), (0.1, 1.0), (0.1, 0.2, 0.3)])
def test_a_decision_range_outside_zero_one_or_reversed_is_one_line(bad) -> None:
    with pytest.raises(EcgmlError, match=r"evaluation\.decision_thresholds="):
        ClinicalSettings(decision_thresholds=bad)
