"""Workers and `starter` against a secured Temporal: mTLS and an API key, through a real TLS proxy.

nginx (Debian's) terminates TLS in front of a Temporal dev server of this module's own and
`grpc_pass`es to it: one port requires a client certificate from the test CA, the other the header
`authorization: Bearer <key>`, as Temporal Cloud does. Everything is configured the way a user would:
TEMPORAL_* variables (or a profile file) read by the SDK's envconfig. A worker process must poll
through the proxy and `starter report` must answer; without the credentials both must exit 1 with
one line naming what failed and the variable to fix, no traceback, and no secret in the output.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from devstack.debian import DebianInstallError
from devstack.postgres import free_port
from devstack.temporal import DevServer
from tests.helpers.grpc_proxy import GrpcProxy
from tests.helpers.operator_cli import starter
from tests.helpers.worker_procs import start_worker, stop_worker, worker_env
from warmup.config import Settings

API_KEY = "tk-test-6f1d0c9a2b7e4e21"
WRONG_KEY = "tk-wrong-0000aaaa1111"


@dataclass
class Secured:
    server: DevServer
    proxy: GrpcProxy
    client: Client  # plaintext, straight to the dev server: to see the worker's pollers


@pytest_asyncio.fixture(scope="module")
async def secured(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Secured]:
    root = tmp_path_factory.mktemp("secured-temporal")
    server = DevServer(root / "temporal.db", port=free_port(), ui_port=free_port())
    proxy = GrpcProxy(root / "nginx", server.address, API_KEY)
    server.start()  # from the main thread: its parent-death signal is tied to the starting thread
    try:
        try:
            proxy.start()
        except DebianInstallError as exc:
            pytest.skip(f"nginx is not available: {exc}")
        client = await Client.connect(server.address)
        yield Secured(server, proxy, client)
    finally:
        proxy.stop()
        server.stop()


def mtls_vars(s: Secured, **changes: str | None) -> dict[str, str]:
    pki = s.proxy.pki
    env: dict[str, str | None] = {
        "TEMPORAL_ADDRESS": s.proxy.mtls_address,
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca_cert),
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.client_cert),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.client_key),
        **changes,
    }
    return {k: v for k, v in env.items() if v is not None}


def api_key_vars(s: Secured, key: str = API_KEY) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": s.proxy.api_key_address,
        "TEMPORAL_API_KEY": key,
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(s.proxy.pki.ca_cert),
    }


def process_env(settings: Settings, temporal: dict[str, str]) -> dict[str, str]:
    env = worker_env(settings, "unused")
    for name in [k for k in env if k.startswith("TEMPORAL_")]:
        del env[name]  # only what the case sets, never the developer's own
    return {**env, **temporal}


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def wait_polling(s: Secured, proc: subprocess.Popen[bytes], log: Path, queue: str) -> None:
    """Until the dev server itself lists a poller on the worker's task queue (it came through nginx)."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"the worker exited with {proc.returncode}: {tail(log)}"
        resp = await s.client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace="default",
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        if resp.pollers:
            return
        assert time.monotonic() < deadline, f"no poller within 60 s: {tail(log)}"
        await asyncio.sleep(0.3)


@pytest.mark.parametrize("mode", ["mtls", "api_key"])
async def test_worker_and_starter_connect(
    secured: Secured, make_settings: Callable[..., Settings], tmp_path: Path, mode: str
) -> None:
    settings = make_settings()
    temporal = mtls_vars(secured) if mode == "mtls" else api_key_vars(secured)
    env = process_env(settings, temporal)
    log = tmp_path / "worker.log"
    proc = start_worker(env, log)
    try:
        await wait_polling(secured, proc, log, settings.TASK_QUEUE)
        run = await starter(env, "report", "--json")
        assert run.code == 0, run.err
    finally:
        stop_worker(proc)
    text = log.read_text()
    assert proc.returncode == 0, text[-2000:]
    how = "mTLS with a private CA" if mode == "mtls" else "TLS with a private CA, API key"
    assert f"on {temporal['TEMPORAL_ADDRESS']} (namespace default, {how})" in text
    assert API_KEY not in text + run.out + run.err
    assert secured.proxy.pki.client_key.read_text().splitlines()[1] not in text


async def test_a_profile_file_is_the_same_connection(
    secured: Secured, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    pki = secured.proxy.pki
    profiles = tmp_path / "temporal.toml"
    profiles.write_text(
        f"""
[profile.default]
address = "127.0.0.1:1"

[profile.secured]
address = "{secured.proxy.mtls_address}"
namespace = "default"
[profile.secured.tls]
server_ca_cert_path = "{pki.ca_cert}"
client_cert_path = "{pki.client_cert}"
client_key_path = "{pki.client_key}"
"""
    )
    env = process_env(make_settings(), {"TEMPORAL_CONFIG_FILE": str(profiles), "TEMPORAL_PROFILE": "secured"})
    run = await starter(env, "report", "--json")
    assert run.code == 0, run.err
    # The default profile points nowhere: the message names the address it came from.
    run = await starter({**env, "TEMPORAL_PROFILE": "default"}, "report")
    assert run.code == 1
    assert "cannot reach Temporal at 127.0.0.1:1" in run.err and "profile 'default' of" in run.err


CASES: dict[str, tuple[Callable[[Secured], dict[str, str]], list[str]]] = {
    # case: (TEMPORAL_* variables, fragments the one line must hold)
    "no client certificate": (
        lambda s: mtls_vars(s, TEMPORAL_TLS_CLIENT_CERT_PATH=None, TEMPORAL_TLS_CLIENT_KEY_PATH=None),
        ["refused the connection (client certificate required)", "TEMPORAL_TLS_CLIENT_CERT_PATH"],
    ),
    "wrong API key": (
        lambda s: api_key_vars(s, WRONG_KEY),
        ["refused the API key (invalid API key)", "check TEMPORAL_API_KEY"],
    ),
    "no API key": (
        lambda s: {k: v for k, v in api_key_vars(s).items() if k != "TEMPORAL_API_KEY"},
        ["requires credentials", "TEMPORAL_API_KEY"],
    ),
    "untrusted server CA": (
        lambda s: mtls_vars(s, TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(s.proxy.pki.other_ca_cert)),
        ["TLS handshake with Temporal at", "not trusted (UnknownIssuer)", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"],
    ),
    "plaintext to a TLS port": (
        lambda s: {"TEMPORAL_ADDRESS": s.proxy.mtls_address},
        ["closed the connection", "TEMPORAL_TLS=true"],
    ),
    "nothing listening": (
        lambda s: {"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"},
        ["cannot reach Temporal at", "(connection refused); check TEMPORAL_ADDRESS"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_without_the_credentials_both_fail_with_one_clear_line(
    secured: Secured, make_settings: Callable[..., Settings], tmp_path: Path, case: str
) -> None:
    variables, fragments = CASES[case]
    env = process_env(make_settings(), variables(secured))
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.run", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=PIPE
    )
    _, stderr = await asyncio.wait_for(worker.communicate(), 60)
    run = await starter(env, "report")
    for name, code, err in (("worker", worker.returncode, stderr.decode()), ("starter", run.code, run.err)):
        print(f"{case}: {name} exit {code}: {err.strip().splitlines()[-1] if err.strip() else ''}")
        assert code == 1, f"{name}: {err}"
        assert "Traceback" not in err, f"{name}: {err}"
        lines = [line for line in err.splitlines() if line.strip() and " INFO " not in line]
        assert len(lines) == 1, f"{name}: {err}"
        for fragment in fragments:
            assert fragment in lines[0], f"{name}: {fragment!r} not in {lines[0]!r}"
        assert API_KEY not in err and WRONG_KEY not in err
