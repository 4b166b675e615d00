"""``run_one(cfg)``: the single run lifecycle (fit → predict val/test → evaluate → log → explain).

Every model kind goes through it behind a :class:`~ecgml.pipeline.fitters.Fitter`; the run is
ended by :func:`~ecgml.tracking.tracked_run`. ``resume=<run_id>`` (:func:`resume_run`) re-opens a
killed run with the ``config.yaml`` it logged at its start and continues its fit from the
``checkpoints/last.ckpt`` it logged every epoch. Extra Lightning callbacks (the sweep's pruning)
come from the caller: the pipeline never imports the sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import lightning.pytorch as L
import pandas as pd
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from ecgml import CONF_DIR
from ecgml.beatstore import BeatStore
from ecgml.bounds import check_bounds
from ecgml.data.augment import AugmentSettings
from ecgml.data.datamodule import BeatTable
from ecgml.data.tasks import task_spec
from ecgml.errors import EcgmlError
from ecgml.evaluation import TABLES, Evaluation
from ecgml.evaluation.predictions import clinical_settings
from ecgml.evaluation.subgroups import resolve_subgroup_columns
from ecgml.evaluation.tasks import PATIENT_PREDICTIONS
from ecgml.explain import explain_model
from ecgml.models.features_lr import FEATURES
from ecgml.pipeline.beat_model import (
    log_beat_model,
    model_spec,
    n_ensemble_members,
)
from ecgml.pipeline.context import (
    Resume,
    RunResult,
    hydra_overrides,
    run_dir,
    write_config_files,
)
from ecgml.pipeline.fitters import (
    Fitter,
    LightningFitter,
    SklearnFitter,
    build_callbacks,
    check_model_fits_task,
    ensemble_size,
    label_smoothing,
    make_fitter,
)
from ecgml.pipeline.model_card import MODEL_CARD, CardInputs, model_card_markdown
from ecgml.pipeline.pretrained import read_pretrained
from ecgml.pipeline.units import Unit, run_unit
from ecgml.pipeline.validation_report import (
    REPORT_HTML,
    report_rows,
    run_evidence,
    write_validation_report,
)
from ecgml.recordstore import RecordStore
from ecgml.tasks import RunTask, run_task
from ecgml.tasks.base import loss_pos_weight
from ecgml.tracking import (
    NOTE_TAG,
    end_dead_runs,
    finite_metrics,
    flatten_config,
    git_state,
    lightning_run,
    log_dataset_inputs,
    preserved_tracking_uri,
    resolve_store,
)
from ecgml.tracking.artifacts import fetch_run, log_files, log_folder, run_artifact
from ecgml.tracking.runs import run_id_of
from ecgml.trust import read_stored_config, read_stored_overrides

SKIPPED = "skipped_records.csv"  # a record run's records left out, and why
ARTIFACTS = (
    "config.yaml",
    "overrides.yaml",
    "predictions.csv",
    PATIENT_PREDICTIONS,  # a serum run's
    "splits.csv",
    SKIPPED,
)

log = logging.getLogger("ecgml.pipeline")


def log_config_files(logger: MLFlowLogger, cfg: DictConfig, out: Path) -> None:
    """``config.yaml`` and ``overrides.yaml`` logged as the run starts: a run killed before its
    end keeps the config ``resume=`` needs (the end of the run logs them again, unchanged)."""
    write_config_files(cfg, out, hydra_overrides())
    names = ("config.yaml", "overrides.yaml")
    log_files(logger.experiment, run_id_of(logger), (out / n for n in names))


def log_run_files(
    logger: MLFlowLogger,
    cfg: DictConfig,
    out: Path,
    table: BeatTable,
    fitter: Fitter,
    predictions: pd.DataFrame,
    overrides: list[str],
) -> None:
    """The contract artifacts at the run root (and the evaluation's figures/results)."""
    client, run_id = logger.experiment, run_id_of(logger)
    write_config_files(cfg, out, overrides)
    predictions.to_csv(out / "predictions.csv", index=False)
    table.splits.to_csv(out / "splits.csv", index=False)
    if isinstance(fitter, SklearnFitter) and fitter.model is not None:
        weights = fitter.model[-1].coef_[0]
        pd.DataFrame({"feature": FEATURES, "coefficient": weights}).to_csv(
            out / "coefficients.csv", index=False
        )
    log_files(client, run_id, (out / n for n in ("coefficients.csv", *ARTIFACTS, *TABLES)))
    for folder in ("figures", "per_disorder"):
        log_folder(client, run_id, out / folder)
    if cfg.training.log_checkpoint:
        for path in fitter.checkpoints:  # one per ensemble member
            folder = (
                "checkpoints"
                if path.parent.name == "checkpoints"
                else f"checkpoints/{path.parent.name}"
            )
            log_files(client, run_id, [path], under=folder)


def log_model(
    cfg: DictConfig,
    fitter: Fitter,
    unit: Unit,
    table: Any,
    run_id: str,
    task: RunTask,
    evaluation: Any,
) -> None:
    """The MLflow model ``ecgml.promote`` registers (Lightning models only): the spec of
    ``cfg`` with the task's outputs, thresholds and calibration and the unit's input layout."""
    if not (cfg.training.log_model and isinstance(fitter, LightningFitter)):
        return
    members = n_ensemble_members(fitter.model)
    base = model_spec(cfg, table.seq_len, table.fs, table.r_index, 0.5, ensemble=members)
    spec = task.finish_spec(base, cfg, fitter.model, evaluation)
    spec = unit.finish_spec(spec, cfg, table, fitter.model)
    log_beat_model(resolve_store(cfg.logger.tracking_uri).tracking_uri, run_id, fitter.model, spec)


def explain_and_log(
    cfg: DictConfig,
    logger: MLFlowLogger,
    fitter: Fitter,
    table: BeatTable,
    predictions: pd.DataFrame,
    out: Path,
    task: RunTask,
) -> dict[str, float]:
    """Saliency on the test beats (``explain.enabled``) with the study's statistics, for each
    view the task gives (a multi-label or serum run: one per disorder, under
    ``explain/<disorder>/``), logged under ``explain/``: the statistics as its ``stats.csv``,
    not as metrics (they are returned for the model card and the console)."""
    if not cfg.explain.enabled or not isinstance(fitter, LightningFitter):
        return {}
    beats, meta = table.subset("test")
    test = predictions.set_index("beat_id").loc[meta["beat_id"]].reset_index()
    metrics: dict[str, float] = {}
    for name, model, frame in task.explain_views(fitter.model, test):
        keep = frame.index.to_numpy()
        folder = out / "explain" if name is None else out / "explain" / name
        found = explain_model(
            model,
            beats[keep],
            frame.reset_index(drop=True),
            table.fs,
            table.r_index,
            cfg.explain,
            folder,
        )
        prefix = "explain/" if name is None else f"explain/{name}/"
        metrics.update({k.replace("explain/", prefix, 1): v for k, v in found.items()})
    log_folder(logger.experiment, run_id_of(logger), out / "explain")
    return metrics


def log_datasets(cfg: DictConfig, logger: MLFlowLogger, table: Any, unit: Unit) -> None:
    """The examples (beats, records) of each split as MLflow dataset inputs (the runs table's
    Dataset column)."""
    columns = [
        c
        for c in ("patient_id", "beat_id", "group", "y", "center", "device")
        if c in table.meta.columns
    ]
    splits = {
        s: table.meta.loc[table.meta["split"] == s, columns].reset_index(drop=True)
        for s in ("train", "val", "test")
    }
    source, name = unit.dataset(cfg)
    log_dataset_inputs(logger.experiment, run_id_of(logger), splits, source, name, table.digest)


def log_model_card(
    cfg: DictConfig,
    logger: MLFlowLogger,
    table: BeatTable,
    metrics: dict[str, Any],
    evaluation: Evaluation,
    out: Path,
    checklist: list[tuple[str, str, str, str]],
) -> Path:
    """Write ``model_card.md`` from the run's own results (``checklist``: the validation
    report's rows) and log it at the run root."""
    card = CardInputs(
        cfg,
        run_id_of(logger),
        table,
        metrics,
        evaluation,
        clinical_settings(cfg.evaluation),
        git_commit=git_state()["git.commit"],
        checklist=checklist,
    )
    path = out / MODEL_CARD
    path.write_text(model_card_markdown(card), encoding="utf-8")
    log_files(logger.experiment, run_id_of(logger), [path])
    return path


def load_unit_store(cfg: DictConfig) -> BeatStore | RecordStore:
    """The configured store, of the unit ``data`` names: whole recordings, or beats."""
    return cast(BeatStore | RecordStore, run_unit(cfg).load_store(cfg))


def check_settings(cfg: DictConfig, meta: pd.DataFrame) -> None:
    """Every setting a run reads late, checked before the run opens (one line, exit 2)."""
    loss_pos_weight(cfg.training.pos_weight, 1.0)
    ensemble_size(cfg)
    check_model_fits_task(cfg)
    label_smoothing(cfg, task_spec(cfg))
    run_task(task_spec(cfg)).check_table(cfg, meta)
    build_callbacks(cfg, run_dir() / "checkpoints")  # conflicting callbacks fail here too
    AugmentSettings.from_config(cfg.data.get("augment"))
    settings = clinical_settings(cfg.evaluation)  # bad prevalences etc.
    resolve_subgroup_columns(meta, settings.subgroups)
    if cfg.model.get("init_from"):
        read_pretrained(str(cfg.model.init_from), cfg.logger.tracking_uri)


def run_one(
    cfg: DictConfig,
    parent_run_id: str | None = None,
    store: BeatStore | RecordStore | None = None,
    callbacks: Sequence[L.Callback] = (),
    resume: Resume | None = None,
) -> RunResult:
    """Fit, predict val/test, evaluate, log everything; one tracked MLflow run, whatever the
    task (:mod:`ecgml.tasks`) and the unit (:mod:`ecgml.pipeline.units`).

    ``parent_run_id`` nests the run under a cross-validation parent (its folder: the job's
    ``fold<k>/``); ``store`` reuses a loaded store; ``resume`` re-opens that run and continues
    from its checkpoint. The process's MLflow tracking URI is left as it was.
    """
    unit = run_unit(cfg)
    if resume is not None and not unit.resumable:
        raise EcgmlError(
            f"resume={resume.run_id}: the run is a {unit.name} run, and resume= continues beat "
            "runs only: start it again (ecgml.train with its overrides.yaml)"
        )
    with preserved_tracking_uri():
        store = store or unit.load_store(cfg)
        L.seed_everything(cfg.seed, workers=True)
        table = unit.table(cfg, store)
        check_settings(cfg, table.meta)
        out = run_dir() if parent_run_id is None else run_dir() / f"fold{cfg.split.fold}"
        task = task_spec(cfg)
        unit_tags = unit.run_tags(cfg, table)
        tags = {
            "dataset.digest": table.digest,
            "disorder": task.subject(cfg.disorder.name),
            "task": task.name,
            **unit_tags,
        }
        resumed = resume.run_id if resume else None
        with lightning_run(cfg, tags, parent_run_id, resume_run_id=resumed) as logger:
            if resume is None:  # params, config and datasets were logged when the run started
                logger.log_hyperparams(flatten_config(cfg))
                log_config_files(logger, cfg, out)
            checkpoint = resume.checkpoint if resume else None
            overrides = resume.overrides if resume else hydra_overrides()
            fitter = make_fitter(cfg, logger, out, unit, callbacks, checkpoint)
            run = Lifecycle(cfg, logger, unit, table, out, fitter, unit_tags)
            return run.complete(overrides, new_run=resume is None)


@dataclass
class Lifecycle:
    """One run from its opened MLflow run on: fit, predict val/test, evaluate, log the files,
    the model, the explanations and the model card, describe it."""

    cfg: DictConfig
    logger: MLFlowLogger
    unit: Unit
    table: Any
    out: Path
    fitter: Fitter
    unit_tags: dict[str, str]  # what the unit tagged the run with (its parent takes them)

    def complete(self, overrides: list[str], new_run: bool = True) -> RunResult:
        cfg, logger, unit, table, out = self.cfg, self.logger, self.unit, self.table, self.out
        task = run_task(cfg)
        if new_run:
            log_datasets(cfg, logger, table, unit)
        predictions = self.fit_and_predict()
        title = task.title(cfg, unit.title_detail)
        evaluation = task.evaluate(predictions, cfg.evaluation, out, title)
        metrics: dict[str, Any] = {**evaluation.metrics, **unit.run_metrics(table, predictions)}
        predictions = evaluation.predictions
        run_id = run_id_of(logger)
        logger.log_metrics(finite_metrics(metrics))
        calibrator = getattr(evaluation, "calibrator", None)  # one output: its calibration
        if calibrator is not None:
            logger.experiment.set_tag(run_id, "ecgml.calibration", calibrator.describe())
        skipped = unit.skipped(table)
        if skipped is not None:
            skipped.to_csv(out / SKIPPED, index=False)
        log_run_files(logger, cfg, out, table, self.fitter, predictions, overrides)
        log_model(cfg, self.fitter, unit, table, run_id, task, evaluation)
        note = task.description(cfg, metrics) + unit.note(table)
        if unit.explains:
            metrics.update(explain_and_log(cfg, logger, self.fitter, table, predictions, out, task))
        with run_evidence(logger.experiment, run_id) as evidence:  # read back once, for both
            if task.writes_model_card and unit.writes_model_card:
                rows = report_rows(evidence)
                log_model_card(cfg, logger, table, metrics, evaluation, out, rows)
                note += f" · model card: {MODEL_CARD}"
            write_validation_report(logger.experiment, evidence)
        note += f" · validation report: {REPORT_HTML}"
        logger.experiment.set_tag(run_id, NOTE_TAG, note)
        return RunResult(
            run_id,
            str(logger.experiment_id),
            metrics,
            predictions,
            self.fitter.checkpoint,
            self.fitter.fit_metrics,
            tags=self.unit_tags,
            skipped=skipped,
            threshold=getattr(evaluation, "threshold", None),  # one output: its threshold
        )

    def fit_and_predict(self) -> pd.DataFrame:
        """The fit, then the val and test predictions (a scikit-learn fit logs its own
        validation metrics, which Lightning logs per epoch)."""
        self.fitter.fit(self.table)
        if isinstance(self.fitter, SklearnFitter):
            self.logger.log_metrics(finite_metrics(self.fitter.fit_metrics), step=0)
        return pd.concat([self.fitter.predict(s) for s in ("val", "test")], ignore_index=True)


def resume_run(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> RunResult:
    """``resume=<run_id>``: continue a killed run, in the same MLflow run, with the config it
    logged at its start (only ``logger.tracking_uri`` comes from ``cfg``: where the run was
    found) and the fit restored from its last per-epoch checkpoint."""
    run_id = str(cfg.resume)
    uri = resolve_store(cfg.logger.tracking_uri).tracking_uri
    client = MlflowClient(uri)
    resumable_run(client, run_id, uri)
    folder = run_dir() / "resume"
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = run_artifact(client, run_id, "checkpoints/last.ckpt", folder)
    if checkpoint is None:
        raise EcgmlError(
            f"resume={run_id}: the run has no checkpoint to resume from (checkpoints/last.ckpt "
            "is logged every epoch when training.log_checkpoint=true)"
        )
    original = run_artifact(client, run_id, "config.yaml", folder)
    if original is None:
        raise EcgmlError(f"resume={run_id}: the run has no config.yaml to resume with")
    # Every class the stored config names passes the gate before anything is built.
    run_cfg = read_stored_config(original, f"resume={run_id}")
    check_bounds(run_cfg, f"resume={run_id}")
    run_cfg.logger.tracking_uri = cfg.logger.tracking_uri
    overrides_file = run_artifact(client, run_id, "overrides.yaml", folder)
    overrides = read_stored_overrides(overrides_file, f"resume={run_id}") if overrides_file else []
    today = composed_today(overrides, f"resume={run_id}")
    if today is not None:
        warn_config_drift(run_cfg, today, f"resume={run_id}")
    resume = Resume(run_id, checkpoint, overrides)
    return run_one(run_cfg, callbacks=callbacks, resume=resume)


def config_keys(node: Any, prefix: str = "", depth: int = 2) -> set[str]:
    """The dotted keys of ``node`` (a config or a plain mapping) down to ``depth`` levels."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if depth == 0 or not isinstance(node, dict):
        return set()
    keys = set()
    for key, value in node.items():
        name = f"{prefix}{key}"
        keys.add(name)
        keys |= config_keys(value, f"{name}.", depth - 1)
    return keys


def composed_today(overrides: Sequence[str], source: str) -> DictConfig | None:
    """The run's config as this ecgml composes it from the run's own overrides (None, with a
    warning, when they no longer compose)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    wanted = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "resume"))]
    try:
        if GlobalHydra.instance().is_initialized():
            return compose(config_name="train", overrides=wanted)
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="train", overrides=wanted)
    except Exception as err:  # Hydra raises several types for overrides that no longer apply
        log.warning(
            "%s: its overrides no longer compose (%s); resuming with the config it stored",
            source,
            " ".join(str(err).split())[:200],
        )
        return None


def warn_config_drift(stored: DictConfig, current: DictConfig, source: str) -> None:
    """One warning line when a stored run config has keys today's ecgml does not know, or lacks
    keys it has (a run logged by another version): the run goes on with what it stored."""
    ignored = {"resume", "hydra"}
    stored_keys, current_keys = config_keys(stored), config_keys(current)
    unknown = sorted(k for k in stored_keys - current_keys if k.split(".")[0] not in ignored)
    missing = sorted(k for k in current_keys - stored_keys if k.split(".")[0] not in ignored)
    if unknown or missing:
        log.warning(
            "%s: its config was written by another ecgml version (unknown keys: %s; missing "
            "keys: %s); resuming with the values it stored",
            source,
            ", ".join(unknown[:8]) or "none",
            ", ".join(missing[:8]) or "none",
        )


def resumable_run(client: MlflowClient, run_id: str, uri: str) -> Run:
    """The run ``resume=`` re-opens: it exists, and is neither finished nor still running."""
    end_dead_runs(client)  # a SIGKILLed run left RUNNING becomes KILLED
    run = fetch_run(client, run_id, uri, what="resume")
    status = run.info.status
    if status == "FINISHED":
        raise EcgmlError(f"resume={run_id}: the run is already FINISHED; nothing to resume")
    if status == "RUNNING":
        raise EcgmlError(f"resume={run_id}: the run is still RUNNING in a live process")
    return run
