"""What a run learns, as the object the run lifecycle calls: a task owns its evaluation, the
outputs of its logged model, its explain views, the run page's line and the console's lines.

One module per task; :func:`run_task` picks the object for a composed config (or a
:class:`~ecgml.data.tasks.TaskSpec`). Adding a task is a module here, its ``conf/task`` file and
its kind in :data:`ecgml.data.tasks.KINDS`: the lifecycle does not branch on the task.
"""

from __future__ import annotations

from typing import Any

from ecgml.data.tasks import TaskSpec, task_spec
from ecgml.tasks.base import RunTask
from ecgml.tasks.binary import BinaryTask
from ecgml.tasks.multilabel import MultilabelTask
from ecgml.tasks.serum import SerumTask

#: The task object of each kind of :class:`~ecgml.data.tasks.TaskSpec`.
TASKS: dict[str, type[RunTask]] = {
    "binary": BinaryTask,
    "multilabel": MultilabelTask,
    "regression": SerumTask,
}


def run_task(cfg_or_spec: Any) -> RunTask:
    """The task object of a composed config (its ``task`` group) or of a ``TaskSpec``."""
    spec = cfg_or_spec if isinstance(cfg_or_spec, TaskSpec) else task_spec(cfg_or_spec)
    return TASKS[spec.kind](spec)


__all__ = ["TASKS", "BinaryTask", "MultilabelTask", "RunTask", "SerumTask", "run_task"]
