"""``python -m ecgml.export``: the body is :mod:`ecgml.cli.export`."""

from ecgml.cli.export import main

if __name__ == "__main__":
    main()
