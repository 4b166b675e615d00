"""Hydra sweeper plugin ``hydra/sweeper=ecgml_optuna`` (the implementation is ecgml.sweep)."""
