"""``python -m npebm``: the ``npebm`` command, which lives in :mod:`npebm.cli`."""
import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
