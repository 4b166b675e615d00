"""``python -m ecgml.serve``: the body is :mod:`ecgml.cli.serve`."""

from ecgml.cli.serve import main

if __name__ == "__main__":
    main()
