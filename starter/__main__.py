"""`python -m starter`: the same command as the `starter` console script."""

from __future__ import annotations

import sys

from starter.cli import main

if __name__ == "__main__":
    sys.exit(main())
