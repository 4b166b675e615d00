"""``python -m ecgml.export run_id=… out=model.onnx``: a logged model as a checked ONNX file.

See :mod:`ecgml.inference.onnx_export` for the graph's inputs, outputs and metadata.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from ecgml.cli import hydra_entry
from ecgml.errors import EcgmlError
from ecgml.inference.loading import load_model_uri
from ecgml.inference.onnx_export import ExportReport, export_model
from ecgml.tracking import check_store
from ecgml.tracking.registry import run_model_id

FORMATS = ("onnx",)


def model_uri_of(cfg: DictConfig, tracking_uri: str) -> str:
    """The URI to export: ``model_uri=…`` as given, or the model logged with ``run_id``."""
    if bool(cfg.get("model_uri")) == bool(cfg.get("run_id")):
        raise EcgmlError(
            "give exactly one of run_id=<id> (a training run) or model_uri=<models:/… URI>"
        )
    if cfg.get("model_uri"):
        return str(cfg.model_uri)
    client = MlflowClient(tracking_uri)
    run_id = str(cfg.run_id)
    _, model_id = run_model_id(client, run_id, tracking_uri)  # unknown run: one line
    return f"models:/{model_id}"


def check_exportable(cfg: DictConfig, tracking_uri: str) -> None:
    """One line for what cannot be exported: another format, a scikit-learn run."""
    if str(cfg.format) not in FORMATS:
        raise EcgmlError(f"format={cfg.format} is not supported: use format=onnx")
    if cfg.get("run_id"):
        try:
            params = MlflowClient(tracking_uri).get_run(str(cfg.run_id)).data.params
        except Exception:  # an unknown run is reported by model_uri_of with its own message
            return
        if params.get("model.name") == "features_lr":
            raise EcgmlError(
                f"run {cfg.run_id} is a features_lr model (NeuroKit2 features → scikit-learn "
                "logistic regression): it has no network to export to ONNX; export a CNN run"
            )


def export(cfg: DictConfig) -> ExportReport:
    out = Path(str(cfg.out)).expanduser()
    if out.suffix.lower() != ".onnx":
        raise EcgmlError(f"out={out} must end in .onnx")
    tracking_uri = check_store(cfg.tracking_uri).tracking_uri
    check_exportable(cfg, tracking_uri)
    uri = model_uri_of(cfg, tracking_uri)
    model = load_model_uri(uri, tracking_uri)
    if model.unit != "beat":
        raise EcgmlError(
            f"{uri} is a record model (unit {model.unit}): the ONNX contract is one beat in, one "
            "probability out; serve it with mlflow models serve or ecgml.predict"
        )
    report = export_model(model, out, int(cfg.check_beats), float(cfg.tolerance))
    inside = "inside the graph" if report.calibration_in_graph else "NOT in the graph (isotonic)"
    print(
        f"wrote {report.path} from {uri}: onnxruntime = torch within {report.max_abs_diff:.1e} "
        f"on {report.n_checked} beats; recalibration {inside}",
        flush=True,
    )
    return report


main = hydra_entry("export")(export)
