"""Paper ECG image → calibrated lead-II signal (mV at ``fs``) → beats.

Steps, one small module each: :mod:`.image` (load, grayscale, deskew), :mod:`.grid` (grid
pitch → pixels per mm; calibration pulse), :mod:`.trace` (background removal, contours, the
trace, one value per column, baseline), :mod:`.pipeline` (image → signal → beats, pure per
image) and ``python -m ecgml.digitize`` (:mod:`.__main__`, the Hydra CLI over a folder).
"""

from ecgml.digitize.errors import DigitizeError

__all__ = ["DigitizeError"]
