"""``python -m ecgml.train``: see :mod:`ecgml.cli.train`."""

from ecgml.cli.train import main
from ecgml.pipeline.run import run_one as train

__all__ = ["main", "train"]

if __name__ == "__main__":
    main()
