"""`python -m bench.unsandboxed_worker`: `python -m workers.run` with the workflow sandbox turned off.

For the memory phase's comparison only (what the sandbox costs per resident workflow). Production
workers keep the sandbox: it is what catches non-deterministic workflow code.
"""

from __future__ import annotations

import os
import sys

from temporalio.worker import UnsandboxedWorkflowRunner

import workers.worker
from workers.run import main

if __name__ == "__main__":
    setattr(workers.worker, "workflow_runner", UnsandboxedWorkflowRunner)  # noqa: B010 - a patch, on purpose
    code = main()
    sys.stdout.flush()
    os._exit(code)
