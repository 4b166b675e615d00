"""``python -m ecgml.synth``: the body is :mod:`ecgml.cli.synth`."""

from ecgml.cli.synth import main

if __name__ == "__main__":
    main()
