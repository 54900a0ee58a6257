"""Secrets never leak: after a real run, no SMTP password, OAuth2 client secret, refresh or access token,
Fernet key, DSN password or API token is anywhere an operator or the Temporal server can see it —
histories, search attributes, memos, worker logs, the starter's output, the HTTP API's answers and log,
or any database column but the ciphertext (an API token is stored as its sha256 only)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from google.protobuf.json_format import MessageToDict
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from devstack.mail_lab import MailLab
from devstack.smtp_sink import SmtpSink
from tests.helpers.mail_lab import mail_lab_fixture, new_user
from tests.helpers.oauth_server import CLIENT_ID, CLIENT_SECRET, shared_token_server
from tests.helpers.operator_cli import free_port, unique_mailbox_ids
from tests.helpers.worker_procs import Workers, worker_env
from warmup.config import Settings
from warmup.secrets import SecretBox

__all__ = ["mail_lab_fixture"]

GOOD = ["audit-a@leak.test", "audit-b@leak.test"]
LOCKED = "audit-locked@leak.test"
QUOTA = 3


def _texts(value: Any) -> Iterator[str]:
    """Every string in a JSON value, plus the decoded form of any that is base64 (Temporal payloads)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v)
    elif isinstance(value, str):
        yield value
        try:
            yield base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            pass


def _leaks(secrets: dict[str, str], where: str, texts: Iterator[str] | list[str]) -> list[str]:
    found = []
    for text in texts:
        found += [f"{name} in {where}" for name, value in secrets.items() if value in text]
    return found


def _worker_logs(log_dir: Path) -> list[tuple[str, str]]:
    logs = [(log.name, log.read_text(errors="replace")) for log in sorted(log_dir.glob("worker*.log"))]
    assert logs and any(text for _, text in logs), "the workers wrote no log: nothing was audited there"
    return logs


class Run:
    """The starter as an operator runs it; everything it printed is kept for the audit."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.output: list[str] = []

    async def starter(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> int:
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "starter", *args],
            env=env or self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.output += [proc.stdout, proc.stderr]
        return proc.returncode

    async def enroll(self, address: str, port: int, *extra: str, secret: str, via_env: bool = False) -> int:
        args = ["enroll", "--mailbox", address, "--user", self.env["AUDIT_USER"], "--smtp-host", "127.0.0.1"]
        args += ["--smtp-port", str(port), "--smtp-security", "none", "--username", address]
        args += ["--timezone", "UTC", *extra]
        if via_env:
            return await self.starter(*args, "--secret-env", "AUDIT_PW", env={**self.env, "AUDIT_PW": secret})
        return await self.starter(*args, "--secret-stdin", stdin=secret + "\n")

    async def status(self, address: str) -> dict[str, Any]:
        before = len(self.output)
        assert await self.starter("status", "--mailbox", address, "--json") == 0, self.output[-1]
        data = json.loads(self.output[before])
        assert isinstance(data, dict)
        return data


async def _histories_and_descriptions(client: Client, queue: str, expected: int) -> list[Any]:
    """Every run of every workflow on the test's task queue: its history and its description."""
    for _ in range(100):  # visibility lags the server by a moment
        runs = [wf async for wf in client.list_workflows(f"TaskQueue = '{queue}'")]
        if len({wf.id for wf in runs}) >= expected:
            break
        await asyncio.sleep(0.2)
    assert len({wf.id for wf in runs}) >= expected, [wf.id for wf in runs]
    dumps: list[Any] = []
    for wf in runs:
        handle = client.get_workflow_handle(wf.id, run_id=wf.run_id)
        dumps.append(json.loads((await handle.fetch_history()).to_json()))
        dumps.append(MessageToDict((await handle.describe()).raw_description))
    return dumps


async def terminate_queue(client: Client, queue: str) -> None:
    """The dev server outlives the test: end its workflows so nothing keeps polling for them."""
    async for wf in client.list_workflows(f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"):
        await client.get_workflow_handle(wf.id, run_id=wf.run_id).terminate("test finished")


async def _database_rows(dsn: str) -> tuple[list[str], dict[str, str]]:
    """Every row of every table as JSON text, without secret_ciphertext; and the ciphertexts by address."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        rows: list[str] = []
        for t in tables:
            name = t["table_name"]
            rows += [
                r["j"]
                for r in await conn.fetch(
                    f"SELECT (to_jsonb(t) - 'secret_ciphertext')::text AS j FROM \"{name}\" t"
                )
            ]
        stored = await conn.fetch("SELECT address, secret_ciphertext FROM mailboxes")
    finally:
        await conn.close()
    return rows, {r["address"]: r["secret_ciphertext"] for r in stored}


async def _audit(
    secrets: dict[str, str],
    dumps: list[Any],
    output: list[str],
    log_dir: Path,
    dsn: str,
    api_texts: Sequence[str] = (),
) -> dict[str, str]:
    """Assert no secret is in a history, the starter's output, the API's answers and log, a worker log or
    a plain column; returns the SMTP password ciphertexts by address."""
    leaks: list[str] = []
    for dump in dumps:
        leaks += _leaks(secrets, "a workflow history or description", _texts(dump))
    leaks += _leaks(secrets, "the starter's output", output)
    leaks += _leaks(secrets, "the HTTP API's answers or its log", list(api_texts))
    for name, text in _worker_logs(log_dir):
        leaks += _leaks(secrets, name, [text])
    rows, ciphertexts = await _database_rows(dsn)
    leaks += _leaks(secrets, "a database row", rows)
    assert not leaks, sorted(set(leaks))
    return ciphertexts


API_MAILBOX = "audit-api@leak.test"


async def _through_the_api(
    run: Run, env: dict[str, str], tmp_path: Path, secrets: dict[str, str], smtp_port: int
) -> list[str]:
    """`python -m api` as deployed, an API token (shown once, by `starter token create`), a mailbox
    enrolled with its password in the request body, a refused request carrying a password, the status
    calls; adds the token and that password to `secrets`, returns every answer and the API's log."""
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "api"],
            env={**env, "WARMUP_API_PORT": str(port), "WARMUP_API_HOST": "127.0.0.1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    texts: list[str] = []
    try:
        created = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "starter", "token", "create", "--user", env["AUDIT_USER"], "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        token = json.loads(created.stdout)["token"]  # shown here, once, by design: not audited
        secrets["the API token"] = token
        api_password = f"ApiPw{uuid.uuid4().hex}"
        secrets["the password given to the API"] = api_password
        body = {
            "address": API_MAILBOX,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "smtp_security": "none",
            "username": API_MAILBOX,
            "timezone": "UTC",
            "secret": api_password,
            "ramp_start": 0,
            "ramp_increment": 0,
            "ramp_ceiling": 0,
        }
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as api:
            for _ in range(200):
                try:
                    if (await api.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            hook = await api.post("/v1/webhooks", json={"url": "https://crm.leak.test/warmup"})
            assert hook.status_code == 201, hook.text
            secrets["the webhook signing secret"] = hook.json()["secret"]  # shown here, once, by design
            answers = [
                await api.post("/v1/mailboxes", json={**body, "smtp_port": "x"}),  # refused, password inside
                await api.post("/v1/mailboxes", json={**body, "secret": api_password + "\n"}),
                await api.post("/v1/mailboxes", json=body),
                await api.get(f"/v1/mailboxes/{API_MAILBOX}"),
                await api.get(f"/v1/mailboxes/{LOCKED}"),
                await api.get("/v1/status"),
                await api.get("/v1/events"),
            ]
        assert [a.status_code for a in answers] == [422, 422, 201, 200, 200, 200, 200], [
            a.text for a in answers
        ]
        # The locked mailbox's pause by the refused login is in the feed, as the customer's to fix.
        kinds = [e["kind"] for e in answers[-1].json()["events"]]
        assert "mailbox.sign_in_needed" in kinds, answers[-1].text
        texts = [a.text for a in answers] + [str(a.headers) for a in answers]
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 15)
    return [*texts, log.read_text(errors="replace")]


async def test_no_secret_reaches_histories_logs_output_or_plain_columns(
    temporal_env: WorkflowEnvironment,
    smtp_sink: SmtpSink,
    make_settings: Callable[..., Settings],
    db_dsn: str,
    tmp_path: Path,
) -> None:
    settings = make_settings()
    await unique_mailbox_ids(db_dsn)
    passwords = {a: f"Pw{uuid.uuid4().hex}" for a in [*GOOD, LOCKED]}
    wrong = f"Wrong{uuid.uuid4().hex}"
    smtp_sink.credentials.update(passwords)  # the locked mailbox is enrolled with `wrong`: a real 535
    secrets = {f"password of {a}": p for a, p in passwords.items()} | {"the wrong password": wrong}
    secrets |= {f"Fernet key {i}": k for i, k in enumerate(settings.secret_keys())}
    if dsn_password := urlsplit(db_dsn).password:
        secrets["the DSN password"] = dsn_password

    address = temporal_env.client.service_client.config.target_host
    env = worker_env(settings, address, RAMP_START_VOLUME=str(QUOTA), RAMP_CEILING=str(QUOTA))
    env["AUDIT_USER"] = f"audit{uuid.uuid4().hex[:8]}"
    run = Run(env)
    workers = Workers(env, tmp_path)
    workers.start(1)
    try:
        assert await run.enroll(GOOD[0], smtp_sink.port, secret=passwords[GOOD[0]]) == 0, run.output[-1]
        assert await run.enroll(GOOD[1], smtp_sink.port, secret=passwords[GOOD[1]], via_env=True) == 0
        # --check logs in first: the starter itself meets the 535 and must report it without the secret.
        assert await run.enroll(LOCKED, smtp_sink.port, "--check", secret=wrong) == 1
        assert "535" in run.output[-1], run.output[-1]
        assert await run.enroll(LOCKED, smtp_sink.port, secret=wrong) == 0, run.output[-1]

        await smtp_sink.wait_for(QUOTA * len(GOOD), timeout=90)
        for _ in range(150):
            locked = await run.status(LOCKED)
            if locked["paused"]:
                break
            await asyncio.sleep(0.2)
        assert locked["paused"] and "535" in str(locked["pause_reason"]), locked
        for a in GOOD:
            await run.status(a)
        assert await run.starter("list", "--json") == 0
        api_texts = await _through_the_api(run, env, tmp_path, secrets, smtp_sink.port)
        dumps = await _histories_and_descriptions(
            temporal_env.client, settings.TASK_QUEUE, expected=2 + len(passwords)
        )
    finally:
        workers.stop_all()
        await terminate_queue(temporal_env.client, settings.TASK_QUEUE)

    ciphertexts = await _audit(secrets, dumps, run.output, tmp_path, db_dsn, api_texts)

    # The ciphertext is where the password is, and only in encrypted form.
    box = SecretBox(settings.secret_keys())
    assert box.decrypt(ciphertexts[GOOD[0]]) == passwords[GOOD[0]]
    assert box.decrypt(ciphertexts[LOCKED]) == wrong
    assert not _leaks(secrets, "a ciphertext", list(ciphertexts.values()))
    # The audit looked where the secrets would be: the 535 and the sends are in what it read.
    assert any("535" in t for d in dumps for t in _texts(d)), "no history recorded the refused login"


async def test_no_oauth2_token_or_client_secret_leaks_and_a_revoked_sign_in_pauses(
    temporal_env: WorkflowEnvironment,
    mail_lab: MailLab,
    make_settings: Callable[..., Settings],
    db_dsn: str,
    tmp_path: Path,
) -> None:
    """Two OAuth2 mailboxes on the mail lab, enrolled by the starter with `--check`, sending through real
    workers with tokens that expire every few seconds and a refresh token the provider rotates on each
    refresh; then one user's consent is withdrawn. No client secret, refresh token or access token may
    appear anywhere but the ciphertext columns; the revoked mailbox pauses, through its workflow, saying how
    to sign in again."""
    server = shared_token_server()
    server.reset()
    server.rotate, server.access_ttl = True, 4.0
    settings = make_settings()
    await unique_mailbox_ids(db_dsn)
    users = [new_user(mail_lab, "audit-oauth") for _ in range(2)]
    first_refresh = {u.address: server.issue_refresh_token(u.address) for u in users}
    address = temporal_env.client.service_client.config.target_host
    env = worker_env(
        settings, address, RAMP_START_VOLUME="6", RAMP_CEILING="6", SAME_MAILBOX_DELAY_MIN="0.03",
        SAME_MAILBOX_DELAY_MAX="0.05", OAUTH_TOKEN_MARGIN_SECONDS="1",
    )  # fmt: skip
    env |= {"AUDIT_USER": f"audit{uuid.uuid4().hex[:8]}", "AUDIT_CS": CLIENT_SECRET}
    run = Run(env)
    workers = Workers(env, tmp_path)
    workers.start(1)
    try:
        for u in users:
            code = await run.starter(
                "enroll", "--mailbox", u.address, "--user", env["AUDIT_USER"], "--timezone", "UTC",
                "--auth", "oauth2", "--oauth-provider", "custom", "--oauth-token-url", server.token_url,
                "--oauth-client-id", CLIENT_ID, "--oauth-client-secret-env", "AUDIT_CS",
                "--oauth-refresh-token-stdin", "--smtp-host", mail_lab.host,
                "--smtp-port", str(mail_lab.submission_port), "--smtp-security", "starttls",
                "--no-verify-tls", "--check",
                stdin=first_refresh[u.address] + "\n",
            )  # fmt: skip
            assert code == 0, run.output[-1]
        for _ in range(300):  # each mailbox sends 6, 2-3 s apart: several token lifetimes
            if sum(len(mail_lab.messages(u.address)) for u in users) >= 6:
                break
            await asyncio.sleep(0.1)
        delivered = {u.address: len(mail_lab.messages(u.address)) for u in users}
        assert sum(delivered.values()) >= 6, delivered
        revoked = users[0]
        server.revoke_user(revoked.address)  # mid-day: its next refresh meets invalid_grant
        for _ in range(200):
            status = await run.status(revoked.address)
            if status["paused"]:
                break
            await asyncio.sleep(0.2)
        assert status["paused"], status
        reason = str(status["pause_reason"])
        assert "invalid_grant" in reason and f"starter authorize --mailbox {revoked.address}" in reason
        dumps = await _histories_and_descriptions(temporal_env.client, settings.TASK_QUEUE, expected=3)
    finally:
        workers.stop_all()
        await terminate_queue(temporal_env.client, settings.TASK_QUEUE)
        access, refresh = server.access_tokens(), server.all_refresh_tokens()
        refreshes = len(server.refreshes)
        server.reset()

    assert refreshes >= 4, "the tokens never expired and were never refreshed: nothing to audit"
    secrets = {f"access token {i}": t for i, t in enumerate(access)}
    secrets |= {f"refresh token {i}": t for i, t in enumerate(refresh)}
    secrets["the client secret"] = CLIENT_SECRET
    secrets |= {f"Fernet key {i}": k for i, k in enumerate(settings.secret_keys())}
    await _audit(secrets, dumps, run.output, tmp_path, db_dsn)
    assert any("invalid_grant" in t for d in dumps for t in _texts(d)), "no history recorded the refusal"
