"""The workflow sandbox configuration every worker (and test worker) uses.

Two modes (WARMUP_WORKFLOW_SANDBOX):
- "shared" (the default): our workflow modules are imported once and shared by every workflow run.
  The sandbox still isolates each run and blocks I/O builtins such as open(), but calls like
  datetime.now() or random.random() in workflow code are no longer intercepted at run time: the
  proxies that catch them are what a per-run re-import creates. That re-import costs about 45 KB per
  cached workflow (111 against 67 KB per resident workflow, measured by `make bench`), 1.1 GB for
  a worker caching 25,000 workflows.
- "isolated": the SDK's default, each run re-imports the workflow modules behind those proxies.
  The workflow tests and the replay tests run this way, and ruff bans the non-deterministic calls in
  workflows/ (workflows/ruff.toml), so such a call fails CI before it reaches a shared worker.
"""

from __future__ import annotations

from typing import Literal

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

SandboxMode = Literal["shared", "isolated"]


def workflow_runner(mode: SandboxMode = "isolated") -> SandboxedWorkflowRunner:
    # Our pure modules are deterministic and stateless: sharing them with the sandbox saves a
    # re-import per workflow run and keeps zoneinfo the real module.
    shared = ("warmup", "workflows") if mode == "shared" else ("warmup",)
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*shared))
