"""What a quiet console may print: ecgml's own lines and Lightning's progress bar, never a
third-party library's log or warning line."""

from __future__ import annotations

import re

#: A line a library printed: its log line under Hydra's format, a Python warning, torch's
#: glog-style line, MLflow's own log format, MLflow's artifact download bar.
THIRD_PARTY = (
    re.compile(r"^\[[^\]]*\]\[(?!ecgml[.\]])[\w.]+\]\[[A-Z]+\]"),
    re.compile(r"\b\w+Warning: "),
    re.compile(r"^[WIE]\d{4} \d\d:\d\d:\d\d"),
    re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]+ [\w.]+: "),
    re.compile(r"Downloading artifacts"),
)


def third_party_lines(console: str) -> list[str]:
    """The lines of ``console`` (stdout + stderr) that a library printed."""
    lines = console.replace("\r", "\n").splitlines()
    return [line for line in lines if any(p.search(line) for p in THIRD_PARTY)]
