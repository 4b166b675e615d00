"""``python -m ecgml.predict``: the body is :mod:`ecgml.cli.predict`."""

from ecgml.cli.predict import main

if __name__ == "__main__":
    main()
