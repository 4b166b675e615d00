"""What every command that writes a folder shares: ecgml-owned output folders (a marker, hidden
temporaries renamed into place, stale-temp cleanup) and pool workers that die with their parent.

Used by ``ecgml.digitize`` and ``ecgml.synth`` (independent siblings, so this sits below both).
"""

from ecgml.outputs.folders import (
    MARKER,
    check_replaceable,
    move_into_place,
    new_temp,
    read_marker,
    refuse_overlap,
    remove_stale_temps,
    write_marker,
)
from ecgml.outputs.files import check_output_file, storage_error, write_text_atomic
from ecgml.outputs.workers import init_worker, stop_pool

__all__ = [
    "MARKER",
    "check_output_file",
    "check_replaceable",
    "init_worker",
    "move_into_place",
    "new_temp",
    "read_marker",
    "refuse_overlap",
    "remove_stale_temps",
    "storage_error",
    "stop_pool",
    "write_marker",
    "write_text_atomic",
]
