"""``python -m ecgml.compare``: the body is :mod:`ecgml.cli.compare`."""

from ecgml.cli.compare import main

if __name__ == "__main__":
    main()
