"""``python -m ecgml.promote``: the body is :mod:`ecgml.cli.promote`."""

from ecgml.cli.promote import main

if __name__ == "__main__":
    main()
