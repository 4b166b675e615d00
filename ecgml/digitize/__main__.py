"""``python -m ecgml.digitize``: the body is :mod:`ecgml.cli.digitize`."""

from ecgml.cli.digitize import main

if __name__ == "__main__":
    main()
