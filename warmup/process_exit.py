"""How our programs end: their exit statuses, and the exit that skips the interpreter's teardown.

temporalio 1.35 can abort during interpreter teardown after all work is done (PyGILState_Release,
exit 134/139, sdk-python #300), turning a success into a crash. A program that has finished and
flushed its output leaves with `exit_skipping_teardown` instead.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

EXIT_OK = 0
EXIT_FAILURE = 1  # the work failed: a server refused, a record is missing, a send did not go out
EXIT_USAGE = 2  # bad arguments or configuration: the message names what to fix
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


def exit_skipping_teardown(code: int) -> NoReturn:
    """Flush stdout and stderr, then leave with `code` at once (no atexit, no interpreter teardown)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
