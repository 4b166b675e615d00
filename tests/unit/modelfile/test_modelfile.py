"""The logged model in its own package: models logged before it still load and answer the
same, and serving imports neither the training orchestration nor Lightning or Captum."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgml import PROJECT_ROOT
from ecgml.modelfile.files import read_model_dir, single_disorder
from ecgml.modelfile.serving import predict_frame
from ecgml.modelfile.spec import is_beat_model_dir

OLD_MODEL = PROJECT_ROOT / "tests" / "fixtures" / "model_logged_2026_12"


def request() -> pd.DataFrame:
    t = np.arange(450) / 500.0
    beats = [np.zeros(450), 1.2 * np.exp(-(((t - 0.25) / 0.01) ** 2)) + 0.3 * np.sin(4 * np.pi * t)]
    return pd.DataFrame({"beat": [list(b) for b in beats], "r_index": [125, 125]})


def expected() -> pd.DataFrame:
    return pd.DataFrame(json.loads((OLD_MODEL / "expected_outputs.json").read_text()))


def test_a_model_logged_before_the_package_answers_as_it_did() -> None:
    assert is_beat_model_dir(OLD_MODEL)
    out = predict_frame(single_disorder(read_model_dir(OLD_MODEL, "fixture"), "fixture"), request())
    want = expected()
    assert list(out.columns) == list(want.columns)
    np.testing.assert_allclose(out["hyperkalemia_raw"], want["hyperkalemia_raw"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(out["hyperkalemia"], want["hyperkalemia"], rtol=0, atol=1e-9)


SERVE = """
import json, sys
import mlflow.pyfunc
import numpy as np, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
t = np.arange(450) / 500.0
beats = [np.zeros(450), 1.2 * np.exp(-(((t - 0.25) / 0.01) ** 2)) + 0.3 * np.sin(4 * np.pi * t)]
out = model.predict(pd.DataFrame({"beat": [list(b) for b in beats], "r_index": [125, 125]}))
heavy = sorted(m for m in ("lightning", "pytorch_lightning", "captum", "ecgml.pipeline.run",
                           "ecgml.pipeline.fitters", "ecgml.inference") if m in sys.modules)
print(json.dumps({"raw": list(map(float, out["hyperkalemia_raw"])), "heavy": heavy,
                  "modules": len(sys.modules)}))
"""


def served(model_dir: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", SERVE, str(model_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_serving_an_old_or_a_new_model_imports_no_training_code(tmp_path: Path, compose_cfg):
    """The served pyfunc of a model logged before the move (its entry file imports
    ecgml.pipeline.beat_model) and of one logged now: same answers, no Lightning, no Captum,
    no training orchestration in the process."""
    import torch
    from mlflow.tracking import MlflowClient

    from ecgml.models.factory import build_backbone
    from ecgml.pipeline.beat_model import log_beat_model, model_spec

    old = served(OLD_MODEL)
    np.testing.assert_allclose(old["raw"], expected()["hyperkalemia_raw"], atol=1e-9)
    assert old["heavy"] == []
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("m", str(tmp_path / "art")))
    cfg = compose_cfg("disorder=hyperkalemia")
    torch.manual_seed(0)
    log_beat_model(
        uri,
        run.info.run_id,
        build_backbone(cfg.model, 1, 1, 450).eval(),
        model_spec(cfg, 450, 500.0, 125, 0.5),
    )
    (new_dir,) = {p.parent for p in (tmp_path / "art").rglob("MLmodel")}
    assert (new_dir / "entry.py").is_file()
    new = served(new_dir)
    assert new["heavy"] == []
    np.testing.assert_allclose(new["raw"], old["raw"], atol=1e-9)  # same seed, same weights


def test_fs_and_r_index_may_be_json_integers_but_never_text() -> None:
    from ecgml.modelfile.serving import BadRequest, serving_signature

    loaded = single_disorder(read_model_dir(OLD_MODEL, "fixture"), "fixture")
    as_ints = predict_frame(loaded, request().assign(fs=[500, 500]))
    as_floats = predict_frame(loaded, request().assign(fs=[500.0, 500.0]))
    pd.testing.assert_frame_equal(as_ints, as_floats)
    for column, value in (("fs", "500"), ("r_index", "125"), ("fs", True), ("r_index", [125])):
        with pytest.raises(BadRequest, match=f"{column}=.* is not a number"):
            predict_frame(loaded, request().assign(**{column: [value, value]}))
    inputs = {c.name: str(c.type) for c in serving_signature("hyperkalemia").inputs.inputs}
    assert inputs["fs"] == inputs["r_index"] == "Any"  # a double would refuse JSON 500
