"""``python -m ecgml.ingest``: the body is :mod:`ecgml.cli.ingest`."""

from ecgml.cli.ingest import main

if __name__ == "__main__":
    main()
