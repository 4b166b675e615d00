"""Hospital ECG exports + a lab table → a record store (``python -m ecgml.ingest``).

- :mod:`~ecgml.ingest.sources`: which files to read (a folder, or an index CSV such as
  MIMIC-IV-ECG's ``record_list.csv``);
- :mod:`~ecgml.ingest.reading`: each file read (:mod:`ecgml.ecgfile`), resampled and cut, in
  worker processes;
- :mod:`~ecgml.ingest.labs`: the lab table (ecgml's layout or MIMIC-IV ``labevents``), streamed;
- :mod:`~ecgml.ingest.pairing` and :mod:`~ecgml.ingest.groups`: the closest result per ECG
  and the study group;
- :mod:`~ecgml.ingest.cohort` and :mod:`~ecgml.ingest.run`: exclusions decided, the store
  written atomically.
"""
