"""Beats laid out as a model saw them in training: :func:`ecgml.signal.prepare_beats`, the one
implementation training's layout, ``ecgml.predict`` and the served MLflow model share (a
:class:`~ecgml.tracking.registry.LoadedModel` is the layout: ``seq_len``, ``fs``, ``r_index``,
``baseline``). Re-exported here, where serving looks for it.
"""

from ecgml.signal.prepare import FS_TOLERANCE, prepare_beats

__all__ = ["FS_TOLERANCE", "prepare_beats"]
