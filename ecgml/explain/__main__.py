"""``python -m ecgml.explain``: see :mod:`ecgml.cli.explain`."""

from ecgml.cli.explain import explain_run, main

__all__ = ["explain_run", "main"]

if __name__ == "__main__":
    main()
