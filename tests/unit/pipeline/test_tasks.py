"""Tasks beyond the study (issue 13): multi-label and serum regression — labels, splits, the
metric keys recomputed with scikit-learn, name-keyed outputs, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import DictConfig
from scipy.stats import pearsonr
from sklearn.metrics import mean_absolute_error, roc_auc_score

from ecgml import DISORDERS
from ecgml.beatstore import load_beat_store
from ecgml.data.datamodule import build_beat_table
from ecgml.data.labels import multilabel_labels, regression_targets
from ecgml.data.tasks import task_spec
from ecgml.errors import EcgmlError
from ecgml.evaluation.tasks import (
    evaluate_multilabel,
    evaluate_regression,
    multilabel_metric_keys,
    multilabel_patient_level,
    regression_metric_keys,
    regression_patient_level,
)
from ecgml.models.task_modules import BeatRegressor, MultiLabelClassifier
from ecgml.pipeline.fitters import check_outputs, with_outputs
from tests.task_fakes import write_task_store


@pytest.fixture(scope="module")
def task_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_task_store(tmp_path_factory.mktemp("tasks") / "store")


def _meta(groups: list[str], sodium: list[float] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"patient_id": [f"P{i}" for i in range(len(groups))], "group": groups})
    if sodium is not None:
        frame["sodium"] = sodium
    return frame


def test_multilabel_labels_one_column_per_disorder_normal_all_zero() -> None:
    meta = _meta(
        ["normal", "hyperkalemia", "hypokalemia", "hyponatremia", "hypokalemia"],
        sodium=[140, 139, 141, 128, 130],
    )
    labels, summary = multilabel_labels(meta, DISORDERS)
    got = labels[[f"y_{d}" for d in DISORDERS]].to_numpy().tolist()
    # the last hypokalemia patient has Na 130: hyponatremia too (comorbid), group unchanged
    assert got == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]]
    assert labels["y"].tolist() == [0, 1, 2, 4, 6]
    assert (summary.n_positive_patients, summary.n_negative_patients) == (4, 1)


def test_multilabel_refuses_a_store_with_one_group() -> None:
    with pytest.raises(EcgmlError, match="task=multilabel needs normal patients"):
        multilabel_labels(_meta(["normal"] * 4), DISORDERS)


def test_regression_targets_leave_out_patients_without_a_value() -> None:
    meta = _meta(["normal", "hyperkalemia", "hypokalemia", "normal"])
    meta["potassium"] = [4.1, 6.2, np.nan, 3.9]
    selected, summary = regression_targets(meta, "potassium", 3.5, 5.0)
    assert selected["patient_id"].tolist() == ["P0", "P1", "P3"]
    assert selected["target"].tolist() == [4.1, 6.2, 3.9]
    assert summary.n_positive_patients == 1  # outside 3.5–5.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (None, "has no 'potassium' column"),
        ([4.0, 4.2, 4.4, 4.6], "every potassium value is within"),
    ],
)
def test_regression_refuses_unusable_values(values: list[float] | None, message: str) -> None:
    meta = _meta(["normal", "hyperkalemia", "normal", "normal"])
    if values is not None:
        meta["potassium"] = values
    with pytest.raises(EcgmlError, match=message):
        regression_targets(meta, "potassium", 3.5, 5.0)


def test_unknown_task_is_one_line() -> None:
    cfg = DictConfig({"task": {"name": "calcium"}, "disorder": {"name": "hypokalemia"}})
    with pytest.raises(EcgmlError, match="task=calcium is unknown: use one of binary"):
        task_spec(cfg)


def _table(store: Path, compose_cfg, *overrides: str):
    cfg = compose_cfg("data=beats", f"data.path={store}", *overrides)
    beat_store = load_beat_store(store, default_fs=cfg.data.fs)
    return build_beat_table(beat_store, cfg.disorder, cfg.split, cfg.data, task_spec(cfg))


def test_multilabel_split_is_by_patient_and_stratified_on_the_combination(
    task_store: Path, compose_cfg
) -> None:
    table = _table(task_store, compose_cfg, "task=multilabel", "split=group_kfold", "split.fold=0")
    meta = table.meta
    assert (meta.groupby("patient_id")["split"].nunique() == 1).all()
    test = meta[meta["split"] == "test"].groupby("patient_id")[["y"]].first()
    # every label combination (normal + each disorder) lands in the test fold
    assert set(test["y"]) == {0, 1, 2, 4}
    assert table.target_columns == tuple(f"y_{d}" for d in DISORDERS)


def test_shared_folds_test_the_same_patients_in_every_task(task_store: Path, compose_cfg) -> None:
    common = ("split=group_kfold", "split.fold=1", "split.shared_folds=true")
    multi = _table(task_store, compose_cfg, "task=multilabel", *common).meta
    binary = _table(task_store, compose_cfg, "disorder=hyperkalemia", *common).meta
    tested = lambda m: set(m.loc[m["split"] == "test", "patient_id"])  # noqa: E731
    hyper_or_normal = set(multi.loc[multi["group"].isin(["hyperkalemia", "normal"]), "patient_id"])
    assert tested(binary) == tested(multi) & hyper_or_normal


def _multilabel_predictions(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups = rng.choice(["normal", *DISORDERS], size=120)
    rows = []
    for i, group in enumerate(groups):
        split = "val" if i % 2 else "test"
        for b in range(2):
            row = {"patient_id": f"P{i}", "beat_id": f"P{i}_{b}", "split": split, "group": group}
            for d in DISORDERS:
                truth = int(group == d)
                row[f"y_true_{d}"] = truth
                row[f"y_prob_{d}"] = float(np.clip(0.3 + 0.3 * truth + rng.normal(0, 0.2), 0, 1))
            rows.append(row)
    return pd.DataFrame(rows)


def test_multilabel_metrics_match_a_scikit_learn_recomputation(compose_cfg) -> None:
    cfg = compose_cfg("task=multilabel", "evaluation.n_bootstrap=200")
    frame = _multilabel_predictions()
    found = evaluate_multilabel(frame, cfg.evaluation, DISORDERS)
    prevalences = tuple(cfg.evaluation.prevalence)
    assert set(found.metrics) == set(multilabel_metric_keys(DISORDERS, prevalences))
    test = found.predictions[found.predictions["split"] == "test"]
    aurocs = []
    for d in DISORDERS:
        # recalibration is monotone: AUROC of the raw and recalibrated probabilities agree
        expected = roc_auc_score(test[f"y_true_{d}"], test[f"y_prob_raw_{d}"])
        assert found.metrics[f"test/{d}/auroc"] == pytest.approx(expected)
        assert test[f"y_pred_{d}"].isin([0, 1]).all()
        low, high = (
            found.metrics[f"test/{d}/auroc_ci_low"],
            found.metrics[f"test/{d}/auroc_ci_high"],
        )
        assert low < expected < high
        aurocs.append(expected)
    assert found.metrics["test/macro_auroc"] == pytest.approx(np.mean(aurocs))
    assert found.metrics["test/macro_auroc_ci_low"] < np.mean(aurocs)


def test_regression_metrics_match_a_recomputation(compose_cfg) -> None:
    cfg = compose_cfg("task=potassium", "evaluation.n_bootstrap=300")
    rng = np.random.default_rng(1)
    groups = rng.choice(["normal", "hyperkalemia", "hypokalemia"], size=150)
    truth = np.array([{"hyperkalemia": 6.0, "hypokalemia": 3.0}.get(g, 4.3) for g in groups])
    truth = truth + rng.normal(0, 0.2, truth.size)
    frame = pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(150)],
            "beat_id": [f"B{i}" for i in range(150)],
            "split": np.where(np.arange(150) % 3 == 0, "val", "test"),
            "group": groups,
            "y_true": truth,
            "y_pred": truth + rng.normal(0, 0.5, truth.size),
        }
    )
    serum = task_spec(cfg).serum
    found = evaluate_regression(frame, cfg.evaluation, serum)
    assert set(found.metrics) == set(regression_metric_keys(serum))
    test = frame[frame["split"] == "test"]
    error = test["y_pred"] - test["y_true"]
    assert found.metrics["test/mae"] == pytest.approx(
        mean_absolute_error(test["y_true"], test["y_pred"])
    )
    assert found.metrics["test/rmse"] == pytest.approx(np.sqrt((error**2).mean()))
    assert found.metrics["test/pearson_r"] == pytest.approx(
        pearsonr(test["y_true"], test["y_pred"])[0]
    )
    hyper = test[test["group"].isin(["hyperkalemia", "normal"])]
    expected = roc_auc_score(hyper["group"] == "hyperkalemia", hyper["y_pred"])
    assert found.metrics["test/hyperkalemia_auroc"] == pytest.approx(expected)
    hypo = test[test["group"].isin(["hypokalemia", "normal"])]
    expected = roc_auc_score(hypo["group"] == "hypokalemia", -hypo["y_pred"])
    assert found.metrics["test/hypokalemia_auroc"] == pytest.approx(expected)
    assert (
        found.metrics["test/mae_ci_low"]
        < found.metrics["test/mae"]
        < found.metrics["test/mae_ci_high"]
    )


def _multilabel_model(outputs: tuple[str, ...]) -> MultiLabelClassifier:
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, len(outputs)))
    return MultiLabelClassifier(backbone, torch.optim.AdamW, outputs=outputs)


def test_multilabel_columns_follow_the_output_names_not_their_position() -> None:
    frame = pd.DataFrame({"patient_id": ["P0", "P1"]})
    values = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    swapped = ("hyponatremia", "hyperkalemia", "hypokalemia")
    out = with_outputs(frame, _multilabel_model(swapped), values)
    assert out["y_prob_hyponatremia"].tolist() == [0.1, 0.4]
    assert out["y_prob_hypokalemia"].tolist() == [0.3, 0.6]


def test_a_checkpoint_with_other_outputs_is_refused(tmp_path: Path) -> None:
    model = _multilabel_model(("hyponatremia", "hyperkalemia", "hypokalemia"))
    with pytest.raises(EcgmlError, match="outputs .*hyponatremia.* but the task expects"):
        check_outputs(model, DISORDERS, "best.ckpt")
    check_outputs(_multilabel_model(DISORDERS), DISORDERS, "best.ckpt")  # same order: fine


def test_regressor_predicts_in_mmol_per_litre() -> None:
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 1))
    torch.nn.init.zeros_(backbone[1].weight)
    torch.nn.init.zeros_(backbone[1].bias)
    model = BeatRegressor(backbone, torch.optim.AdamW, None, 4.3, 0.8, outputs=("potassium",))
    # a zero standardized output is the training mean
    assert model.predict_values(torch.zeros(3, 1, 8)).tolist() == pytest.approx([4.3] * 3)


# --------------------------------------------------------------------------- logged task models

SEQ, R, FS = 450, 125, 500.0


def _trained_like(task: str, compose_cfg, swapped: bool = False):
    """A (random-weight) task model and the spec it would be logged with."""
    from types import SimpleNamespace

    from ecgml.models import build_backbone
    from ecgml.pipeline.beat_model import model_spec
    from ecgml.tasks import run_task

    cfg = compose_cfg(f"task={task}")
    torch.manual_seed(0)
    spec = task_spec(cfg)
    backbone = build_backbone(cfg.model, 1, spec.n_outputs, SEQ).eval()
    if spec.kind == "regression":
        model = BeatRegressor(backbone, torch.optim.AdamW, None, 4.3, 0.7, outputs=spec.outputs)
        evaluation = SimpleNamespace(per_output={})
    else:
        outputs = tuple(reversed(spec.outputs)) if swapped else spec.outputs
        model = MultiLabelClassifier(backbone, torch.optim.AdamW, outputs=outputs)
        per = {
            d: SimpleNamespace(
                metrics={"test/threshold": 0.1 * (k + 1)},
                calibrator=SimpleNamespace(to_dict=lambda: {"method": "none"}),
            )
            for k, d in enumerate(outputs)
        }
        evaluation = SimpleNamespace(per_output=per)
    base = model_spec(cfg, SEQ, FS, R, 0.5)
    return model.eval(), run_task(cfg).finish_spec(base, cfg, model, evaluation)


@pytest.mark.parametrize("swapped", [False, True])
def test_a_logged_multilabel_model_answers_each_disorder_by_name(
    tmp_path: Path, compose_cfg, swapped: bool
) -> None:
    from ecgml.pipeline.beat_model import (
        predict_outputs,
        read_model_files,
        scorer_of,
        write_model_files,
    )

    model, spec = _trained_like("multilabel", compose_cfg, swapped)
    files = write_model_files(scorer_of(model, spec), spec, tmp_path)
    loaded = read_model_files(Path(files["weights"]), Path(files["spec"]), "models:/m")
    assert set(loaded) == set(DISORDERS)
    x = np.random.default_rng(0).normal(0, 0.3, (4, SEQ)).astype(np.float32)
    expected = torch.sigmoid(model(torch.from_numpy(x).unsqueeze(1))).detach().numpy()
    for k, name in enumerate(model.outputs):  # the network's k-th output is named name
        assert loaded[name].score(x) == pytest.approx(expected[:, k], abs=1e-6)
        assert loaded[name].threshold == pytest.approx(0.1 * (k + 1))
    frame = predict_outputs(loaded, pd.DataFrame({"beat": list(x.astype(float)), "r_index": R}))
    assert {f"{d}{s}" for d in DISORDERS for s in ("", "_raw", "_decision")} == set(frame.columns)


def test_a_logged_potassium_model_answers_in_mmol_per_litre(tmp_path: Path, compose_cfg) -> None:
    from ecgml.pipeline.beat_model import (
        predict_outputs,
        read_model_files,
        scorer_of,
        write_model_files,
    )

    model, spec = _trained_like("potassium", compose_cfg)
    files = write_model_files(scorer_of(model, spec), spec, tmp_path)
    loaded = read_model_files(Path(files["weights"]), Path(files["spec"]), "models:/k")
    x = np.random.default_rng(1).normal(0, 0.3, (3, SEQ)).astype(np.float32)
    expected = model(torch.from_numpy(x).unsqueeze(1)).detach().numpy()
    assert loaded["potassium"].score(x) == pytest.approx(expected, abs=1e-5)
    frame = predict_outputs(loaded, pd.DataFrame({"beat": list(x.astype(float)), "r_index": R}))
    assert list(frame.columns) == ["potassium_mmol_l"]  # logged without intervals: none


def test_a_potassium_model_logged_with_intervals_answers_them(tmp_path: Path, compose_cfg) -> None:
    """The interval is stored as numbers and rebuilt at load: the loaded model answers the
    estimate's interval and severity probabilities, as the run's evaluation computed them."""
    import dataclasses
    import json

    from ecgml.evaluation.serum_intervals import SerumIntervals
    from ecgml.modelfile.serving import serving_signature
    from ecgml.pipeline.beat_model import (
        predict_outputs,
        read_model_files,
        scorer_of,
        write_model_files,
    )

    model, spec = _trained_like("potassium", compose_cfg)
    system = SerumIntervals("potassium", 0.9, np.linspace(-0.8, 0.8, 41))
    spec = dataclasses.replace(spec, interval=system.to_dict())
    files = write_model_files(scorer_of(model, spec), spec, tmp_path)
    stored = json.loads(Path(files["spec"]).read_text())["interval"]
    assert stored["level"] == 0.9 and len(stored["residuals"]) == 41  # plain numbers
    loaded = read_model_files(Path(files["weights"]), Path(files["spec"]), "models:/k")
    x = np.random.default_rng(1).normal(0, 0.3, (3, SEQ)).astype(np.float32)
    frame = predict_outputs(loaded, pd.DataFrame({"beat": list(x.astype(float)), "r_index": R}))
    expected = ["potassium_mmol_l", "potassium_mmol_l_low", "potassium_mmol_l_high"]
    expected += ["potassium_p_ge_6.0", "potassium_p_ge_6.5", "potassium_p_lt_3.0"]
    assert list(frame.columns) == expected
    low, high = system.interval(frame["potassium_mmol_l"].to_numpy())
    np.testing.assert_allclose(frame["potassium_mmol_l_low"], low)
    np.testing.assert_allclose(frame["potassium_mmol_l_high"], high)
    served = serving_signature("potassium", [], True, ["II"], True).outputs.input_names()
    assert served == expected
    spec_file = Path(files["spec"])
    damaged = json.loads(spec_file.read_text())
    damaged["interval"]["residuals"] = "many"
    spec_file.write_text(json.dumps(damaged))
    with pytest.raises(EcgmlError, match="serum interval is damaged"):
        read_model_files(Path(files["weights"]), spec_file, "models:/k")


def test_task_patient_levels_follow_evaluation_aggregate() -> None:
    frame = pd.DataFrame(
        {
            "patient_id": ["a", "a", "b"],
            "group": ["hypokalemia"] * 2 + ["normal"],
            "y_true_hypokalemia": [1, 1, 0],
            "y_prob_hypokalemia": [0.2, 0.8, 0.4],
            "y_true": [3.0, 3.0, 4.2],
            "y_pred": [3.1, 3.5, 4.0],
        }
    )
    multi = multilabel_patient_level(frame, ["hypokalemia"], "max")
    np.testing.assert_allclose(multi["y_prob_hypokalemia"], [0.8, 0.4])
    np.testing.assert_allclose(regression_patient_level(frame, "median")["y_pred"], [3.3, 4.0])
    np.testing.assert_allclose(regression_patient_level(frame)["y_pred"], [3.3, 4.0])
    with pytest.raises(EcgmlError, match="evaluation.aggregate='last' is not known"):
        multilabel_patient_level(frame, ["hypokalemia"], "last")
