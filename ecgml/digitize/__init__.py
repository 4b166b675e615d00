"""Paper ECG image or photo → calibrated lead-II signal and every lead (mV at ``fs``) → beats.

Steps, one small module each: :mod:`.image` (load, grayscale, deskew), :mod:`.rectify` (a
photo's sheet → homography, even light), :mod:`.grid` (grid pitch → pixels per mm),
:mod:`.pulse` (the 1 mV pulse), :mod:`.trace` (background removal, contours, the trace, one
value per column, baseline), :mod:`.leads` (trace rows, layout, each lead on the page's time
axis), :mod:`.pipeline` (image → signals → beats, pure per image) and
``python -m ecgml.digitize`` (:mod:`.__main__`, the Hydra CLI over a folder).
"""

from ecgml.digitize.errors import DigitizeError

__all__ = ["DigitizeError"]
