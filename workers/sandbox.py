"""The workflow sandbox configuration every worker (and test worker) uses."""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions


def workflow_runner() -> SandboxedWorkflowRunner:
    # Our pure modules are deterministic and stateless: sharing them with the sandbox saves a
    # re-import per workflow run and keeps zoneinfo the real module.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("warmup")
    )
