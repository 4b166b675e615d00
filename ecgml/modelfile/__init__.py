"""The logged model: its format, writing and reading its files, scoring, the served pyfunc.

A trained model is logged as an MLflow pyfunc "models from code" model:

- ``artifacts/weights.safetensors``: the scorer's tensors (safetensors: no pickle, no code);
- ``artifacts/ecgml_model.json``: the :class:`~ecgml.modelfile.spec.ModelSpec` — the backbone
  config, the input layout training used (``seq_len``, ``fs``, ``r_index``, ``baseline``), the
  threshold chosen on validation and the recalibration fitted there (also the MLmodel
  ``metadata``);
- ``entry.py``: the python model is a class of this package
  (:class:`~ecgml.modelfile.serving.EcgmlBeatModel`), not a pickled object.

Reading a model never executes anything from the store: the backbone class passes the gate of
:mod:`ecgml.trust`, the tensors are copied into it. This package sits below the pipeline and the
inference layer and imports neither, nor Lightning or Captum: serving needs only this.
"""
