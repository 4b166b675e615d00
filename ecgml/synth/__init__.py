"""The synthetic cohort: physiologically grounded patients, beats and paper-ECG images."""
