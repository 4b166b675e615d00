"""Benchmark ``python -m ecgml.predict``: start-up time and beats/s on a folder of beat CSVs.

Three cnn1d models (untrained weights: speed does not depend on them) at the synthetic
cohort's shape (500 Hz, 450 samples, R at 125) are logged and promoted in a temporary MLflow
store, exactly as ``ecgml.train`` + ``ecgml.promote`` do. Then:

- in process: import time, model loading (3 models from the registry), scoring a folder of
  ``--n-beats`` beat CSVs (read + prepare + 3 models), and one digitized image;
- as a user runs it: ``python -m ecgml.predict`` on one beat and on the whole folder
  (wall-clock, so the difference is the folder's cost after start-up);
- the same model exported to ONNX (``ecgml.export``): onnxruntime vs torch beats/s at batch 1
  and 256 (the torch side as ``ecgml.predict`` scores: Conv+BN folded, ``inference_mode``).

    .venv/bin/python experiments/bench_predict.py [--n-beats 1000] [--skip-cli] [--onnx-only]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_beats(n: int, fs: float = 500.0, seed: int = 0) -> tuple[np.ndarray, int]:
    """``n`` realistic beats (NeuroKit2-simulated ECG, 250 ms before / 650 ms after R)."""
    import neurokit2 as nk

    from ecgml.signal import extract_beats

    signal = nk.ecg_simulate(
        duration=max(20, n + 10), sampling_rate=fs, heart_rate=70, random_state=seed
    )
    beat_set = extract_beats(signal, fs, min_correlation=None, max_amplitude_ratio=None)
    reps = int(np.ceil(n / len(beat_set)))
    return np.tile(beat_set.beats, (reps, 1))[:n], beat_set.r_offset


def register_models(uri: str, seq_len: int, r_index: int, fs: float) -> None:
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    from ecgml import CONF_DIR, DISORDERS
    from ecgml.models import build_backbone
    from ecgml.pipeline.beat_model import log_beat_model, model_spec
    from ecgml.tracking.registry import promote_run

    client = MlflowClient(uri)
    cnn1d = OmegaConf.load(CONF_DIR / "model" / "cnn1d.yaml")
    for disorder in DISORDERS:
        experiment = client.create_experiment(f"ecgml-{disorder}")
        run = client.create_run(experiment, tags={"disorder": disorder})
        cfg = OmegaConf.create(
            {
                "disorder": {"name": disorder, "positive": disorder, "negative": "normal"},
                "model": {
                    "name": "cnn1d",
                    "backbone": cnn1d.backbone,
                },
                "data": {"align": "r_peak"},
            }
        )
        backbone = build_backbone("cnn1d", in_channels=1, n_outputs=1, seq_len=seq_len)
        spec = model_spec(cfg, seq_len, fs, r_index, 0.5)
        log_beat_model(uri, run.info.run_id, backbone, spec)
        client.set_terminated(run.info.run_id, "FINISHED")
        promote_run(run.info.run_id, tracking_uri=uri)


def write_beat_folder(folder: Path, beats: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, beat in enumerate(beats):
        text = "mv\n" + "\n".join(f"{v:.5f}" for v in beat) + "\n"
        (folder / f"beat_{k:05d}.csv").write_text(text)


def timed(label: str, func, *args, **kwargs):
    start = time.perf_counter()
    value = func(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(f"{label:<48} {seconds:8.2f} s", flush=True)
    return value, seconds


def run_cli(args: list[str], uri: str, cwd: Path) -> float:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MPLBACKEND": "Agg"}
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecgml.predict",
            *args,
            "progress=false",
            f"hydra.run.dir={cwd / 'hydra'}",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"predict failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def beats_per_second(score, x: np.ndarray, batch: int, min_s: float = 2.0) -> float:
    """Beats/s of ``score(chunk)`` over batches of ``batch`` prepared beats (≥ ``min_s`` s)."""
    chunks = [x[i : i + batch] for i in range(0, len(x), batch)]
    score(chunks[0])  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_s:
        for chunk in chunks:
            score(chunk)
            done += len(chunk)
    return done / (time.perf_counter() - start)


def onnx_vs_torch(model, root: Path, x: np.ndarray) -> None:
    """onnxruntime vs torch on the same prepared beats, batch 1 and 256."""
    import dataclasses

    import onnxruntime as ort
    import torch

    from ecgml.inference.onnx_export import export_model
    from ecgml.models.inference import fused_for_inference

    report, _ = timed(
        "export one model to ONNX (+ parity check)", export_model, model, root / "model.onnx"
    )
    print(f"  → max |onnxruntime − torch| {report.max_abs_diff:.1e} on {report.n_checked} beats")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(report.path), options, providers=["CPUExecutionProvider"])
    fused = dataclasses.replace(model, model=fused_for_inference(model.model))
    x3 = x[:, None, :].astype(np.float32)
    for batch in (1, 256):
        ort_bps = beats_per_second(lambda c: session.run(["probability"], {"beats": c}), x3, batch)
        torch_bps = beats_per_second(fused.score, x, batch)
        print(
            f"{f'batch {batch}: onnxruntime vs torch (beats/s)':<48} {ort_bps:10,.0f} vs "
            f"{torch_bps:,.0f} ({ort_bps / torch_bps:.2f}×)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-beats", type=int, default=1000)
    parser.add_argument("--skip-cli", action="store_true", help="in-process figures only")
    parser.add_argument("--onnx-only", action="store_true", help="only onnxruntime vs torch")
    args = parser.parse_args()

    start = time.perf_counter()
    import torch

    from ecgml.inference.inputs import InputOptions
    from ecgml.inference.loading import load_models
    from ecgml.inference.score import predict_path

    import_s = time.perf_counter() - start
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print(f"{'import ecgml.inference (torch, mlflow, …)':<48} {import_s:8.2f} s")
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        root = Path(tmp)
        uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
        beats, r_index = make_beats(args.n_beats)
        fs, seq_len = 500.0, beats.shape[1]
        timed(
            "log + promote 3 models (setup, not start-up)",
            register_models,
            uri,
            seq_len,
            r_index,
            fs,
        )
        folder = root / "beats"
        write_beat_folder(folder, beats)
        disorders = ("hyperkalemia", "hypokalemia", "hyponatremia")
        models, _ = timed(
            "load 3 champion models from the registry", load_models, disorders, "champion", uri
        )
        if args.onnx_only:
            from ecgml.signal import prepare_beats

            model = models["hyperkalemia"]
            x = prepare_beats(list(beats), [r_index] * len(beats), fs, model)
            onnx_vs_torch(model, root, x)
            return
        results, score_s = timed(
            f"predict folder of {args.n_beats} beat CSVs (in process)", predict_path, folder, models
        )
        assert len(results) == args.n_beats and all(r["n_beats"] == 1 for r in results)
        x = np.repeat(beats, 1, axis=0)
        _, pure_s = timed(
            f"score {len(x)} prepared beats × 3 models only",
            lambda: [m.score(x) for m in models.values()],
        )
        print(
            f"  → {args.n_beats / score_s:,.0f} beats/s end to end (read, prepare, 3 models); "
            f"{3 * len(x) / pure_s:,.0f} beat-model scores/s"
        )

        import cv2
        import neurokit2 as nk

        from ecgml.synth.render import render_ecg

        signal = nk.ecg_simulate(duration=10, sampling_rate=500, heart_rate=72, random_state=2)
        image, _ = render_ecg(signal, 500, dpi=200)
        cv2.imwrite(str(root / "image.png"), image)
        timed(
            "predict one 10 s strip image (digitize + 3 models)",
            predict_path,
            root / "image.png",
            models,
            InputOptions(),
        )
        onnx_vs_torch(models["hyperkalemia"], root, x)
        if args.skip_cli:
            return
        one = root / "one"
        write_beat_folder(one, beats[:1])
        cli_one = run_cli([f"input={one}", f"output={root / 'one.json'}"], uri, root)
        print(f"{'CLI python -m ecgml.predict, 1 beat (start-up)':<48} {cli_one:8.2f} s")
        cli_all = run_cli([f"input={folder}", f"output={root / 'all.json'}"], uri, root)
        print(f"{f'CLI python -m ecgml.predict, {args.n_beats} beats':<48} {cli_all:8.2f} s")
        print(
            f"  → after start-up: {cli_all - cli_one:.2f} s for {args.n_beats} beats "
            f"({args.n_beats / max(cli_all - cli_one, 1e-9):,.0f} beats/s)"
        )


if __name__ == "__main__":
    main()
