"""``python -m ecgml.relocate_store``: the body is :mod:`ecgml.cli.relocate_store`."""

from ecgml.cli.relocate_store import main

if __name__ == "__main__":
    main()
