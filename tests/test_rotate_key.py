"""`starter rotate-key`: every stored secret moves to the first key, with workers sending throughout."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
from cryptography.fernet import Fernet, InvalidToken
from temporalio.testing import WorkflowEnvironment

from devstack.smtp_sink import SmtpSink
from tests.helpers.operator_cli import Run, enroll_argv, starter, unique_mailbox_ids
from tests.helpers.worker_procs import Workers, worker_env
from tests.test_secrets_audit import terminate_queue
from warmup.config import Settings
from warmup.mailboxes import NewMailbox, OAuthClient, SmtpAccount, upsert_mailbox
from warmup.models import ScheduleSettings, SmtpSecurity
from warmup.secrets import SecretBox, generate_key


async def _store(dsn: str, secrets: dict[str, str], key: str) -> None:
    """Mailboxes as `starter enroll` stores them, each secret encrypted with `key`."""
    box = SecretBox([key])
    conn = await asyncpg.connect(dsn)
    try:
        for address, secret in secrets.items():
            await upsert_mailbox(
                conn,
                NewMailbox(
                    user_id="rotor",
                    address=address,
                    smtp=SmtpAccount("127.0.0.1", 2525, SmtpSecurity.NONE, address),
                    secret_ciphertext=box.encrypt(secret),
                    schedule=ScheduleSettings(timezone="UTC"),
                ),
            )
    finally:
        await conn.close()


async def _stored(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT address, secret_ciphertext FROM mailboxes ORDER BY id")
    finally:
        await conn.close()
    return {r["address"]: r["secret_ciphertext"] for r in rows}


async def _ledger_statuses(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT status::text AS s, count(*) AS n FROM send_ledger GROUP BY 1")
    finally:
        await conn.close()
    return {r["s"]: int(r["n"]) for r in rows}


def _opens(key: str, token: str) -> str | None:
    try:
        return Fernet(key.encode()).decrypt(token.encode()).decode()
    except InvalidToken:
        return None


def _env(settings: Settings, keys: list[str]) -> dict[str, str]:
    return worker_env(settings, "127.0.0.1:1", SECRET_KEYS=",".join(keys))


async def test_rotation_moves_every_secret_to_the_new_key_in_batches(
    make_settings: Callable[..., Settings], db_dsn: str
) -> None:
    old, new = generate_key(), generate_key()
    secrets = {f"r{i}@rot.test": f"pw-{i}-{uuid.uuid4().hex}" for i in range(5)}
    await _store(db_dsn, dict(list(secrets.items())[:4]), old)
    await _store(db_dsn, dict(list(secrets.items())[4:]), new)  # enrolled after the new key was added
    env = _env(make_settings(), [new, old])

    dry = await starter(env, "rotate-key", "--dry-run", "--batch-size", "2", "--json")
    assert dry.code == 0, dry.err
    assert json.loads(dry.out) == {
        "dry_run": True,
        "rotated": 4,
        "already_current": 1,
        "unreadable_mailbox_ids": [],
    }
    assert all(_opens(old, t) for t in list((await _stored(db_dsn)).values())[:4]), "--dry-run changed rows"

    run = await starter(env, "rotate-key", "--batch-size", "2")
    assert run.code == 0, run.err
    assert "Re-encrypted 4 secret(s)" in run.out and "1 already used it" in run.out
    stored = await _stored(db_dsn)
    assert {a: _opens(new, t) for a, t in stored.items()} == secrets, "a secret was lost or changed"
    assert not any(_opens(old, t) for t in stored.values()), "the old key alone still opens a rotated row"

    again = await starter(env, "rotate-key", "--json")
    assert again.code == 0 and json.loads(again.out)["rotated"] == 0
    assert await _stored(db_dsn) == stored, "a second rotation rewrote rows"


async def test_a_secret_no_key_opens_is_named_and_left_unchanged(
    make_settings: Callable[..., Settings], db_dsn: str
) -> None:
    old, new, lost = generate_key(), generate_key(), generate_key()
    await _store(db_dsn, {"fine@rot.test": "fine-secret"}, old)
    await _store(db_dsn, {"orphan@rot.test": "orphan-secret-8c1f"}, lost)  # its key is gone
    before = await _stored(db_dsn)
    conn = await asyncpg.connect(db_dsn)
    orphan_id = await conn.fetchval("SELECT id FROM mailboxes WHERE address = 'orphan@rot.test'")
    await conn.close()

    run: Run = await starter(_env(make_settings(), [new, old]), "rotate-key")
    assert run.code == 1
    assert f"mailbox {orphan_id} (orphan@rot.test)" in run.err and "WARMUP_SECRET_KEYS" in run.err
    assert "orphan-secret" not in run.out + run.err
    after = await _stored(db_dsn)
    assert after["orphan@rot.test"] == before["orphan@rot.test"], "the unreadable row was changed"
    assert _opens(new, after["fine@rot.test"]) == "fine-secret", "one bad row stopped the others"


async def test_a_worker_with_both_keys_keeps_sending_during_rotation(
    temporal_env: WorkflowEnvironment,
    smtp_sink: SmtpSink,
    make_settings: Callable[..., Settings],
    db_dsn: str,
    tmp_path: Path,
) -> None:
    old, new = generate_key(), generate_key()
    settings = make_settings(SECRET_KEYS=old)
    await unique_mailbox_ids(db_dsn)
    address = temporal_env.client.service_client.config.target_host
    mailboxes = {f"live{i}@rot.test": f"live-{uuid.uuid4().hex}" for i in range(3)}
    smtp_sink.credentials.update(mailboxes)
    quota = 8
    old_env = worker_env(settings, address, RAMP_START_VOLUME=str(quota), RAMP_CEILING=str(quota))
    both = {**old_env, "WARMUP_SECRET_KEYS": f"{new},{old}"}  # step 1: prepend the new key everywhere
    workers = Workers(both, tmp_path)
    workers.start(1)  # enroll is an Update: a worker must be there to accept it
    statuses: dict[str, int] = {}
    try:
        for a, secret in mailboxes.items():  # stored by a starter that only has the old key
            run = await starter(
                {**old_env, "SMTP_PASSWORD": secret}, *enroll_argv(a, "rotor", smtp_sink.port)
            )
            assert run.code == 0, run.err
        await smtp_sink.wait_for(3, timeout=60)
        run = await starter(both, "rotate-key", "--batch-size", "1")  # step 2, mid-day
        assert run.code == 0, run.err
        await smtp_sink.wait_for(quota * len(mailboxes), timeout=90)
        # The sink has the last message a moment before its worker records it SENT.
        for _ in range(100):
            statuses = await _ledger_statuses(db_dsn)
            if statuses == {"SENT": quota * len(mailboxes)}:
                break
            await asyncio.sleep(0.1)
    finally:
        workers.stop_all()
        await terminate_queue(temporal_env.client, settings.TASK_QUEUE)
    assert statuses == {"SENT": quota * len(mailboxes)}, "a send failed or is missing around the rotation"
    stored = await _stored(db_dsn)
    assert {a: _opens(new, t) for a, t in stored.items()} == mailboxes
    assert not any(_opens(old, t) for t in stored.values()), "step 3 (drop the old key) would break a mailbox"


async def test_rotation_re_encrypts_oauth2_client_secrets_and_refresh_tokens(
    make_settings: Callable[..., Settings], db_dsn: str
) -> None:
    old, new = generate_key(), generate_key()
    box = SecretBox([old])
    refresh, client_secret = f"rt-{uuid.uuid4().hex}", f"cs-{uuid.uuid4().hex}"
    conn = await asyncpg.connect(db_dsn)
    try:
        await upsert_mailbox(
            conn,
            NewMailbox(
                user_id="rotor",
                address="oauth@rot.test",
                smtp=SmtpAccount("smtp.rot.test", 587, SmtpSecurity.STARTTLS, "oauth@rot.test"),
                secret_ciphertext=box.encrypt(""),
                schedule=ScheduleSettings(timezone="UTC"),
                oauth=OAuthClient(
                    provider="custom",
                    token_url="https://idp.rot.test/token",
                    client_id="client-1",
                    scopes="mail",
                    client_secret_ciphertext=box.encrypt(client_secret),
                    refresh_token_ciphertext=box.encrypt(refresh),
                ),
            ),
        )
        run = await starter(_env(make_settings(), [new, old]), "rotate-key", "--json")
        assert run.code == 0, run.err
        row = await conn.fetchrow(
            "SELECT secret_ciphertext, oauth_client_secret_ciphertext, oauth_refresh_token_ciphertext"
            " FROM mailboxes WHERE address = 'oauth@rot.test'"
        )
    finally:
        await conn.close()
    assert row is not None
    assert json.loads(run.out)["rotated"] == 3  # the (empty) password, the client secret, the refresh token
    assert _opens(new, row["oauth_refresh_token_ciphertext"]) == refresh
    assert _opens(new, row["oauth_client_secret_ciphertext"]) == client_secret
    assert _opens(old, row["oauth_refresh_token_ciphertext"]) is None
    assert refresh not in run.out + run.err and client_secret not in run.out + run.err
