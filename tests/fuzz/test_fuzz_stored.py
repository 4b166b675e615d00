"""Fuzzing what a shared store hands back: run configs, logged-model specs, REST bodies.

Properties: a stored run config or model spec either passes the gate — and then every class it
names is one the gate allows — or is refused with one line; nothing else is raised and no
payload runs. A REST body through ``ecgml.serve``'s guard and MLflow's scoring app is answered
200 or 400 with a one-line JSON reason, never 500.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from ecgml import PROJECT_ROOT
from ecgml.errors import EcgmlError
from ecgml.modelfile.spec import ModelSpec
from ecgml.trust import read_stored_config, trusted_class
from tests.conftest import compose_once
from tests.fuzz.cases import case_dir
from tests.fuzz.harness import FUZZ

MARKER = Path("/tmp/ecgml-fuzz-payload-ran")
FIXTURE = PROJECT_ROOT / "tests" / "fixtures" / "model_logged_2026_12"
HOSTILE = [
    "ecgml.models.backbones.cnn1d.torch.hub.load",
    "torch.hub.load",
    "builtins.exec",
    "builtins.eval",
    "os.system",
    "subprocess.Popen",
    "functools.partial",
    "posix.system",
    "ecgml.models.backbones.cnn1d.nn.Module",
    "ecgml.data.splits.PatientSplit",
    "ecgml.pipeline.run.run_one",
    "hubconf.payload",
    "importlib.import_module",
    "ecgml.models.backbones",
    "torch.optim.Optimizer",
    "ecgml.trust.trusted_class",
]
TRUSTED = [
    "ecgml.models.backbones.cnn1d.CNN1D",
    "ecgml.models.record_models.SetModel",
    "ecgml.data.splits.Holdout",
    "torch.optim.AdamW",
    "lightning.pytorch.Trainer",
]
TARGETS = st.one_of(
    st.sampled_from(HOSTILE + TRUSTED),
    st.from_regex(r"[a-z_]{1,8}(\.[A-Za-z_]{1,8}){0,4}", fullmatch=True),
    st.text(max_size=30),
    st.integers(),
    st.none(),
)
DIRECTIVES = st.sampled_from(["_target_", "_args_", "_partial_", "_recursive_", "_convert_", "_x_"])
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=10),
    st.sampled_from(["${oc.env:HOME}", "${oc.create:{_target_: os.system}}", f"touch {MARKER}"]),
)


def nodes() -> st.SearchStrategy[Any]:
    return st.recursive(
        LEAF,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.one_of(DIRECTIVES, st.text(max_size=6)), inner, max_size=3),
            st.fixed_dictionaries({"_target_": TARGETS}, optional={"x": inner}),
        ),
        max_leaves=12,
    )


@cache
def base_config() -> dict[str, Any]:
    from omegaconf import OmegaConf

    plain = yaml.safe_load(OmegaConf.to_yaml(compose_once(), resolve=True))
    assert isinstance(plain, dict)
    return plain


SITES = [
    "model.backbone",
    "model.optimizer",
    "model.scheduler",
    "split",
    "trainer",
    "trainer.strategy",
    "callbacks.model_checkpoint",
    "data",
    "model.backbone.dropout",
    "evaluation",
    "seed",
]


@st.composite
def stored_config_text(draw: st.DrawFn) -> str:
    """A run's config.yaml as a store writer might leave it: today's config with nodes
    planted at code-deciding sites, or raw text with YAML tags."""
    if draw(st.integers(0, 9)) == 0:
        tag = draw(
            st.sampled_from(
                [
                    "!!python/object/apply:os.system",
                    "!!python/name:os.system",
                    "!!python/module:os",
                    "!!binary",
                    "&a [*a]",
                ]
            )
        )
        return f"model: {tag} ['touch {MARKER}']\n"
    config = json.loads(json.dumps(base_config()))
    for _ in range(draw(st.integers(1, 3))):
        site = draw(st.sampled_from(SITES))
        *parents, last = site.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[last] = draw(nodes())
    return yaml.safe_dump(config)


def every_target(node: Any) -> list[Any]:
    if isinstance(node, dict):
        found = [node["_target_"]] if "_target_" in node else []
        return found + [t for value in node.values() for t in every_target(value)]
    if isinstance(node, list):
        return [t for value in node for t in every_target(value)]
    return []


@FUZZ
@given(text=stored_config_text())
def test_a_stored_run_config_passes_the_gate_or_is_one_line(text: str) -> None:
    with case_dir() as case:
        path = case / "config.yaml"
        path.write_text(text)
        try:
            loaded = read_stored_config(path, "run x")
        except EcgmlError as err:
            assert "\n" not in str(err) and str(err).startswith("run x: ")
        else:
            from omegaconf import OmegaConf

            for target in every_target(OmegaConf.to_container(loaded, resolve=False)):
                trusted_class(target, "fuzz", "_target_")  # accepted only if allowed
    assert not MARKER.exists()


BACKBONES = st.one_of(
    nodes(),
    st.fixed_dictionaries(
        {"_target_": TARGETS},
        optional={
            "channels": st.lists(st.integers(1, 8), max_size=4),
            "encoder_overrides": nodes(),
        },
    ),
)


@FUZZ
@given(backbone=BACKBONES)
def test_a_model_spec_passes_the_gate_or_is_one_line(backbone: Any) -> None:
    data = json.loads((FIXTURE / "artifacts" / "ecgml_model.json").read_text())
    data["backbone"] = backbone
    try:
        spec = ModelSpec.from_dict(data, "models:/x")
    except EcgmlError as err:
        assert "\n" not in str(err)
    else:
        cls = trusted_class(spec.backbone["_target_"], "fuzz", "backbone._target_")
        assert cls.__module__.startswith(("ecgml.models.backbones.", "ecgml.models.record_models"))
    assert not MARKER.exists()


# ------------------------------------------------------------------ REST bodies


@cache
def guarded_app() -> Any:
    """The fixture model behind MLflow's scoring app behind ecgml's guard (cap 1 MB)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType")
        import mlflow.pyfunc
        from mlflow.pyfunc import scoring_server

    from ecgml.modelfile.guard import GuardedScoring

    model = mlflow.pyfunc.load_model(
        str(PROJECT_ROOT / "tests" / "fixtures" / "model_logged_2026_12")
    )
    return GuardedScoring(scoring_server.init(model), max_body_bytes=1 << 20)


def post(body: bytes) -> tuple[int, bytes]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/invocations",
        "raw_path": b"/invocations",
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 5001),
        "client": ("127.0.0.1", 40000),
        "headers": headers,
    }
    queue = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(guarded_app()(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**20), 10**20),
    st.sampled_from([1e308, -1e308, 12.7, 0.5, 125, -3, 449, 450]),
)


@st.composite
def rest_body(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        depth = draw(st.integers(1, 200))
        return b'{"dataframe_split": ' + b"[" * depth + b"]" * depth + b"}"
    beat = draw(st.one_of(st.lists(NUMBERS, max_size=600), NUMBERS, st.text(max_size=5), st.none()))
    row = {"beat": beat}
    if draw(st.booleans()):
        row["r_index"] = draw(st.one_of(NUMBERS, st.text(max_size=3), st.none()))
    if draw(st.booleans()):
        row["fs"] = draw(st.one_of(NUMBERS, st.none()))
    rows = [row] * draw(st.integers(0, 3))
    if kind == 2:
        return json.dumps({"inputs": rows}).encode()
    if kind == 3:
        columns = list(row)
        return json.dumps(
            {"dataframe_split": {"columns": columns, "data": [list(r.values()) for r in rows]}}
        ).encode()
    return json.dumps({"dataframe_records": rows, "params": draw(nodes())}).encode()


@FUZZ
@given(body=rest_body())
def test_any_rest_body_is_answered_200_or_a_one_line_400(body: bytes) -> None:
    status, answer = post(body)
    assert status in (200, 400), (status, answer[:300])
    payload = json.loads(answer)
    if status == 400:
        assert set(payload) == {"error_code", "message"} and "\n" not in payload["message"]
