"""Beats laid out as a model saw them in training: :func:`ecgml.signal.prepare_beats`, the one
implementation training's layout, ``ecgml.predict`` and the served MLflow model share (a
:class:`~ecgml.tracking.registry.LoadedModel` is the layout: ``seq_len``, ``fs``, ``r_index``,
``baseline``), and :func:`ecgml.signal.prepare_strips` for whole-strip models. Re-exported
here, where serving looks for them.
"""

from ecgml.signal.prepare import FS_TOLERANCE, prepare_beats, prepare_strips

__all__ = ["FS_TOLERANCE", "prepare_beats", "prepare_strips"]
