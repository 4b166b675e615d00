"""Why one image could not be digitized (a ``failed`` row in ``report.csv``)."""

from ecgml.errors import EcgmlError


class DigitizeError(EcgmlError):
    """One image cannot be digitized; the message goes into that image's report row."""
