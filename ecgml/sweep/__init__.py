"""Sweeps: multirun parents in MLflow and Optuna trials reaching the training loop."""
