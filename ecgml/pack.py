"""``python -m ecgml.pack``: the body is :mod:`ecgml.cli.pack`."""

from ecgml.cli.pack import main

if __name__ == "__main__":
    main()
