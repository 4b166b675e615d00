"""``python -m ecgml.evaluate``: see :mod:`ecgml.cli.evaluate`."""

from ecgml.cli.evaluate import main, reevaluate

__all__ = ["main", "reevaluate"]

if __name__ == "__main__":
    main()
