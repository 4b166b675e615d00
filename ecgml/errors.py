"""User-facing errors.

Anything the user can fix (bad data, bad values) raises :class:`EcgmlError` with a one-line
message naming the file or value and what to do; entry points turn it into exit code 2.
"""


class EcgmlError(ValueError):
    """A validation error the user can act on (exit code 2, no traceback)."""

    exit_code = 2
