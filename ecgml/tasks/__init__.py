"""What a run learns, as the object the run lifecycle calls: a task owns its evaluation, the
outputs of its logged model, its explain views, the run page's line and the console's lines.

One module per task; ``conf/task/<name>.yaml`` names its class in ``_target_`` and
:func:`run_task` builds it — through the trust gate, since a run's stored ``config.yaml`` carries
it too (any public class of a module of this package passes; nothing needs registering). A
config without ``_target_`` (a run logged before tasks were classes) gets the class of its
task's kind. Adding a task is a module here, its ``conf/task`` file and its kind in
:data:`ecgml.data.tasks.KINDS`: the lifecycle does not branch on the task.
"""

from __future__ import annotations

import inspect
from typing import Any

from ecgml.data.tasks import TaskSpec, task_spec
from ecgml.errors import EcgmlError
from ecgml.tasks.base import RunTask
from ecgml.tasks.binary import BinaryTask
from ecgml.tasks.multilabel import MultilabelTask
from ecgml.tasks.serum import SerumTask
from ecgml.trust import trusted_class

#: The task object of each kind of :class:`~ecgml.data.tasks.TaskSpec`.
TASKS: dict[str, type[RunTask]] = {
    "binary": BinaryTask,
    "multilabel": MultilabelTask,
    "regression": SerumTask,
}


def run_task(cfg_or_spec: Any, source: str = "config") -> RunTask:
    """The task object of a composed or stored config (its ``task._target_``, else its kind's
    class) or of a ``TaskSpec``. ``source`` names the config in a refusal."""
    if isinstance(cfg_or_spec, TaskSpec):
        return TASKS[cfg_or_spec.kind](cfg_or_spec)
    spec = task_spec(cfg_or_spec)
    task = cfg_or_spec.get("task") if hasattr(cfg_or_spec, "get") else None
    target = task.get("_target_") if task is not None else None
    if target is None:
        return TASKS[spec.kind](spec)
    cls = trusted_class(target, source, "task._target_", within=("ecgml.tasks",))
    if not issubclass(cls, RunTask) or inspect.isabstract(cls):
        raise EcgmlError(
            f"{source}: task._target_={target} is not a task (a concrete subclass of "
            "ecgml.tasks.RunTask): name one of the classes in ecgml/tasks/"
        )
    return cls(spec)


__all__ = ["TASKS", "BinaryTask", "MultilabelTask", "RunTask", "SerumTask", "run_task"]
