"""OAuth2 sign-in (issue #14) against real servers: the mail lab's Postfix and Dovecot take XOAUTH2 logins
and check every token with the local token server (tests/helpers/oauth_server.py), which issues, expires,
rotates and revokes tokens as Google and Microsoft do. What the settings derive and refuse, `enroll --check`,
a send and an inbox session with tokens, an expired token refreshed, a revoked sign-in pausing the mailbox,
a rotated refresh token stored, and two workers refreshing at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import itertools
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx2
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.engagement import EngagementActivities
from activities.send import SendActivities
from devstack.mail_lab import MailLab
from starter import cli
from starter.bulk_enroll import ParsedRow, parse_csv
from starter.enroll_request import EnrollValidationError, parse_enroll_request
from tests.helpers.mail_lab import LabUser, mail_lab_fixture, new_user
from tests.helpers.oauth_server import CLIENT_ID, CLIENT_SECRET, SCOPES, TokenServer, shared_token_server
from tests.helpers.operator_cli import Op, Run, op_fixture, worker_fixture
from warmup import mailbox_settings as ms
from warmup.config import Settings
from warmup.errors import ERR_OAUTH_SIGN_IN, ERR_TRANSIENT
from warmup.mailboxes import (
    ImapServer,
    MailboxRecord,
    NewMailbox,
    OAuthClient,
    SmtpAccount,
    get_mailbox,
    upsert_mailbox,
)
from warmup.models import (
    EngagementSettings,
    ImapSecurity,
    InboxSessionRequest,
    RampSettings,
    ScheduleSettings,
    SendRequest,
    SendStatus,
    SmtpSecurity,
)
from warmup.oauth_providers import AuthMethod
from warmup.oauth_tokens import TokenSource
from warmup.secrets import SecretBox

__all__ = ["mail_lab_fixture", "op_fixture", "worker_fixture"]

_slot = itertools.count()
RATES = EngagementSettings(
    enabled=True, read_rate=1, rescue_rate=1, important_rate=1, reply_rate=0, dwell_min_seconds=0,
    dwell_max_seconds=0, reply_delay_min_minutes=0, reply_delay_max_minutes=0,
)  # fmt: skip


@pytest.fixture
def server() -> Iterator[TokenServer]:
    srv = shared_token_server()
    srv.reset()
    yield srv
    srv.reset()


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(SMTP_TIMEOUT_SECONDS=15, OAUTH_TOKEN_MARGIN_SECONDS=1, OAUTH_TIMEOUT_SECONDS=5)


@pytest.fixture
def box(secret_keys: list[str]) -> SecretBox:
    return SecretBox(secret_keys)


async def enroll_oauth(
    pool: asyncpg.Pool, box: SecretBox, lab: MailLab, server: TokenServer, user: LabUser
) -> tuple[MailboxRecord, str]:
    """An OAuth2 mailbox on the lab, as `starter enroll --auth oauth2` stores it; and its refresh token."""
    refresh = server.issue_refresh_token(user.address)
    async with pool.acquire() as conn:
        record = await upsert_mailbox(
            conn,
            NewMailbox(
                user_id=user.address.split("@")[0],
                address=user.address,
                smtp=SmtpAccount(lab.host, lab.submission_port, SmtpSecurity.STARTTLS, user.address, False),
                secret_ciphertext=box.encrypt(""),
                schedule=ScheduleSettings(timezone="UTC", ramp=RampSettings(5, 0, 5), engagement=RATES),
                imap=ImapServer(lab.host, lab.imaps_port, ImapSecurity.TLS),
                oauth=OAuthClient(
                    provider="custom",
                    token_url=server.token_url,
                    client_id=CLIENT_ID,
                    scopes=SCOPES,
                    client_secret_ciphertext=box.encrypt(CLIENT_SECRET),
                    refresh_token_ciphertext=box.encrypt(refresh),
                ),
            ),
        )
    return record, refresh


def send_request(mailbox: MailboxRecord, slot: int | None = None) -> SendRequest:
    now = dt.datetime.now(dt.UTC)
    return SendRequest(
        mailbox_id=mailbox.id,
        day=now.date().isoformat(),
        slot=next(_slot) if slot is None else slot,
        planned_at=now.timestamp(),
        dispatched_at=now.timestamp(),
    )


async def stored_refresh_token(pool: asyncpg.Pool, box: SecretBox, mailbox_id: int) -> str:
    async with pool.acquire() as conn:
        record = await get_mailbox(conn, mailbox_id)
    assert record is not None and record.oauth is not None
    return box.decrypt(record.oauth.refresh_token_ciphertext)


def tokens(pool: asyncpg.Pool, box: SecretBox, settings: Settings) -> TokenSource:
    """One worker process's token cache."""
    return TokenSource(
        pool, box, margin_seconds=settings.OAUTH_TOKEN_MARGIN_SECONDS, timeout=settings.OAUTH_TIMEOUT_SECONDS
    )


# --- settings: presets, derivations and refusals -----------------------------------------------------


def _raw(**flags: object) -> dict[str, object]:
    return {"address": "ana@corp.test", "user_id": "ana", "timezone": "UTC", **flags}


def test_a_preset_fills_the_servers_the_endpoint_and_the_scopes() -> None:
    google = parse_enroll_request(
        _raw(
            auth_method="oauth2",
            oauth_provider="google",
            oauth_client_id="id-1",
            oauth_refresh_token="rt-secret",
        )
    )
    assert (google.smtp.host, google.smtp.port, google.smtp.security.value) == (
        "smtp.gmail.com",
        587,
        "starttls",
    )
    assert google.imap == ImapServer("imap.gmail.com", 993, ImapSecurity.TLS, "")
    assert google.smtp.username == "ana@corp.test"  # XOAUTH2's user is the address
    assert google.oauth == OAuthClient(
        "google", "https://oauth2.googleapis.com/token", "id-1", "https://mail.google.com/"
    )
    assert google.password == "" and "rt-secret" not in repr(google)
    microsoft = parse_enroll_request(
        _raw(auth_method="oauth2", oauth_provider="microsoft", oauth_tenant="contoso.onmicrosoft.com",
             oauth_client_id="id-2", oauth_refresh_token="rt", oauth_client_secret="cs")
    )  # fmt: skip
    assert (microsoft.smtp.host, microsoft.imap and microsoft.imap.host) == (
        "smtp.office365.com",
        "outlook.office365.com",
    )
    assert microsoft.oauth is not None
    assert (
        microsoft.oauth.token_url
        == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    )
    assert microsoft.oauth.scopes.split() == [
        "https://outlook.office.com/SMTP.Send",
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "offline_access",
    ]
    assert microsoft.secrets[ms.OAUTH_CLIENT_SECRET.name] == "cs"


_G = {"auth_method": "oauth2", "oauth_provider": "google", "oauth_client_id": "x", "oauth_refresh_token": "r"}
_C = {**_G, "oauth_provider": "custom", "smtp_host": "smtp.corp.test", "smtp_port": "587"}
_PW = {"smtp_host": "s.corp.test", "smtp_port": "587", "username": "ana", "secret": "pw"}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({**_G, "oauth_provider": None}, "--auth oauth2 needs --oauth-provider"),
        ({**_G, "oauth_client_id": None}, "needs --oauth-client-id"),
        (
            {**_G, "oauth_refresh_token": None},
            "no OAuth2 refresh token given: pass --oauth-refresh-token-env",
        ),
        (_C, "--oauth-provider custom needs --oauth-token-url"),
        ({**_G, "oauth_provider": "yahoo"}, "--oauth-provider 'yahoo' is not a provider"),
        (
            {**_G, "secret": "pw"},
            "--auth oauth2 signs in with a token, not a password: leave out --secret-env",
        ),
        ({**_G, "oauth_tenant": "t1"}, "--oauth-tenant is only for --oauth-provider microsoft"),
        (
            {**_G, "oauth_token_url": "https://x.test/t"},
            "--oauth-token-url is set by --oauth-provider google",
        ),
        (
            {**_C, "oauth_token_url": "http://idp.corp.test/t"},
            "would send the client secret and refresh token in",
        ),
        ({**_PW, "oauth_client_id": "x"}, "--oauth-client-id given without --auth oauth2"),
        ({**_PW, "oauth_refresh_token": "r"}, "--oauth-refresh-token-stdin) is only for --auth oauth2"),
    ],
)
def test_bad_oauth2_settings_name_the_flag_and_the_fix(flags: dict[str, object], expected: str) -> None:
    with pytest.raises(EnrollValidationError) as caught:
        parse_enroll_request(_raw(**flags))
    assert expected in str(caught.value)


# --- the activities against the lab ---------------------------------------------------------------------


Pair = tuple[tuple[MailboxRecord, str], tuple[MailboxRecord, str]]  # two mailboxes and their refresh tokens


@dataclass
class World:
    """The lab, this test's database and keys, the token server, and two OAuth2 mailboxes on the lab."""

    lab: MailLab
    pool: asyncpg.Pool
    box: SecretBox
    settings: Settings
    server: TokenServer
    pair: Pair

    @property
    def parts(self) -> tuple[asyncpg.Pool, SecretBox, Settings, TokenServer, Pair]:
        return self.pool, self.box, self.settings, self.server, self.pair


@pytest_asyncio.fixture
async def world(
    mail_lab: MailLab, db_pool: asyncpg.Pool, box: SecretBox, settings: Settings, server: TokenServer
) -> AsyncIterator[World]:
    a = await enroll_oauth(db_pool, box, mail_lab, server, new_user(mail_lab, "oa"))
    b = await enroll_oauth(db_pool, box, mail_lab, server, new_user(mail_lab, "ob"))
    yield World(mail_lab, db_pool, box, settings, server, (a, b))


async def test_a_send_and_an_inbox_session_log_in_with_oauth2(world: World) -> None:
    db_pool, box, settings, server, pair = world.parts
    (a, _), (b, _) = pair
    shared = tokens(db_pool, box, settings)
    sends = SendActivities(db_pool, box, settings, shared)
    engage = EngagementActivities(db_pool, box, settings, shared)
    result = await sends.send_email(send_request(a))
    assert result.status is SendStatus.SENT and result.recipient_id == b.id
    assert world.lab.wait_for(b.address, result.message_id) == "INBOX"
    report = await ActivityEnvironment().run(
        engage.inbox_session, InboxSessionRequest(b.id, dt.date.today().isoformat(), 0)
    )
    assert report.found.inbox == 1 and report.found.read == 1 and report.found.flagged == 1, report
    # Postfix (SASL through Dovecot) and Dovecot's IMAP each asked the token server about a token.
    assert server.introspections >= 2
    assert len(server.access_tokens(a.address)) == 1 and len(server.access_tokens(b.address)) == 1
    assert shared.refreshes == 2


async def test_an_expired_access_token_is_refreshed_and_a_revoked_one_retried(world: World) -> None:
    db_pool, box, settings, server, pair = world.parts
    (a, _), _ = pair
    server.access_ttl = 3  # seconds; the worker refreshes 1 s before expiry (the test's margin)
    sends = SendActivities(db_pool, box, settings, tokens(db_pool, box, settings))
    assert (await sends.send_email(send_request(a))).status is SendStatus.SENT
    first = server.access_tokens(a.address)
    await asyncio.sleep(2.2)
    assert (await sends.send_email(send_request(a))).status is SendStatus.SENT
    issued = server.access_tokens(a.address)
    assert len(first) == 1 and len(issued) == 2, "the expiring token was not replaced"
    await asyncio.sleep(1)
    assert not server.is_active(first[0]), "the first token should have expired at the server by now"

    # A cached token the provider revoked before its expiry: one retryable failure, then a new token.
    server.access_ttl = 3600
    sends = SendActivities(
        db_pool, box, settings, tokens(db_pool, box, settings)
    )  # a worker with an hour's token
    assert (await sends.send_email(send_request(a))).status is SendStatus.SENT
    server.revoke_access_tokens(a.address)
    req = send_request(a)
    with pytest.raises(ApplicationError) as caught:
        await sends.send_email(req)
    assert caught.value.type == ERR_TRANSIENT and not caught.value.non_retryable
    assert "535" in str(caught.value)
    assert (await sends.send_email(req)).status is SendStatus.SENT  # Temporal's retry
    async with db_pool.acquire() as conn:
        assert await conn.fetchval("SELECT state::text FROM mailboxes WHERE id = $1", a.id) == "active"


async def test_a_revoked_sign_in_pauses_the_mailbox_and_an_unreachable_endpoint_is_retried(
    world: World,
) -> None:
    db_pool, box, settings, server, pair = world.parts
    (a, refresh), _ = pair
    sends = SendActivities(db_pool, box, settings, tokens(db_pool, box, settings))
    server.fail_next = [503]
    with pytest.raises(ApplicationError) as unavailable:
        await sends.send_email(send_request(a, slot=900))
    assert unavailable.value.type == ERR_TRANSIENT and not unavailable.value.non_retryable
    assert "HTTP 503" in str(unavailable.value)

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/token"
    async with db_pool.acquire() as conn:
        await conn.execute("UPDATE mailboxes SET oauth_token_url = $2 WHERE id = $1", a.id, dead)
    with pytest.raises(ApplicationError) as refused:
        await sends.send_email(send_request(a, slot=901))
    assert refused.value.type == ERR_TRANSIENT and "cannot reach the token endpoint" in str(refused.value)
    async with db_pool.acquire() as conn:
        await conn.execute("UPDATE mailboxes SET oauth_token_url = $2 WHERE id = $1", a.id, server.token_url)

    server.revoke_user(a.address)  # consent withdrawn at the provider
    with pytest.raises(ApplicationError) as revoked:
        await sends.send_email(send_request(a, slot=902))
    assert revoked.value.type == ERR_OAUTH_SIGN_IN and revoked.value.non_retryable
    async with db_pool.acquire() as conn:
        state = await conn.fetchrow("SELECT state::text, pause_reason FROM mailboxes WHERE id = $1", a.id)
        ledger = await conn.fetchval(
            "SELECT error FROM send_ledger WHERE sender_id = $1 AND status = 'FAILED'", a.id
        )
    assert state is not None and state["state"] == "paused"
    assert "invalid_grant" in state["pause_reason"]
    assert f"sign in again with `starter authorize --mailbox {a.address}`" in state["pause_reason"]
    assert ledger.startswith(f"{ERR_OAUTH_SIGN_IN}: ")
    for text in (str(revoked.value), state["pause_reason"], ledger, str(unavailable.value)):
        assert refresh not in text and CLIENT_SECRET not in text
    assert not any(refresh in str(e) for e in (unavailable.value, refused.value))


async def test_a_rotated_refresh_token_is_stored_and_the_next_worker_uses_it(world: World) -> None:
    db_pool, box, settings, server, pair = world.parts
    (a, first), _ = pair
    server.rotate = True  # Microsoft's way: each refresh answers a new refresh token
    sends = SendActivities(db_pool, box, settings, tokens(db_pool, box, settings))
    assert (await sends.send_email(send_request(a))).status is SendStatus.SENT
    stored = await stored_refresh_token(db_pool, box, a.id)
    assert stored != first and server.live_refresh_tokens(a.address) == [stored]
    # A worker started later (an empty cache) refreshes with the stored token, not the retired one.
    later = SendActivities(db_pool, box, settings, tokens(db_pool, box, settings))
    assert (await later.send_email(send_request(a))).status is SendStatus.SENT
    assert server.reused == [] and server.refreshes == [first, stored]
    assert server.live_refresh_tokens(a.address) == [await stored_refresh_token(db_pool, box, a.id)]


async def test_two_workers_refreshing_at_once_keep_the_newest_refresh_token(
    world: World, db_dsn: str
) -> None:
    db_pool, box, settings, server, pair = world.parts
    (a, first), _ = pair
    # Rotation with reuse detection: a retired refresh token presented again is refused (invalid_grant),
    # so a worker refreshing with a token another worker just replaced would pause the mailbox.
    server.rotate, server.refresh_delay = True, 0.5
    pool_2 = await asyncpg.create_pool(db_dsn, min_size=1, max_size=2)
    try:
        workers = [tokens(db_pool, box, settings), tokens(pool_2, box, settings)]
        got = await asyncio.gather(*(w.access_token(a.id, a.address) for w in workers))
    finally:
        await pool_2.close()
    assert all(t.fresh for t in got) and got[0].token != got[1].token
    assert all(server.is_active(t.token) for t in got)
    assert server.reused == [], "a worker presented a refresh token the other had already replaced"
    assert len(server.refreshes) == 2 and server.refreshes[0] == first
    newest = await stored_refresh_token(db_pool, box, a.id)
    assert server.live_refresh_tokens(a.address) == [newest] and newest != server.refreshes[1]


# --- enroll --check ------------------------------------------------------------------------------------


async def test_enroll_check_logs_in_with_oauth2_and_stores_the_rotated_token(
    mail_lab: MailLab, op: Op, worker: None, server: TokenServer
) -> None:
    user = new_user(mail_lab, "oe")
    refresh = server.issue_refresh_token(user.address)
    server.rotate = True
    flags = [
        "enroll", "--mailbox", user.address, "--user", "oauth-user", "--timezone", "UTC", "--auth", "oauth2",
        "--oauth-provider", "custom", "--oauth-token-url", server.token_url, "--oauth-client-id", CLIENT_ID,
        "--oauth-scopes", SCOPES, "--smtp-host", mail_lab.host, "--smtp-port", str(mail_lab.submission_port),
        "--smtp-security", "starttls", "--imap-host", mail_lab.host, "--imap-port", str(mail_lab.imaps_port),
        "--imap-security", "tls", "--no-verify-tls", "--ramp-start", "0", "--ramp-ceiling", "0",
        "--oauth-client-secret-env", "CS", "--oauth-refresh-token-stdin", "--check", "--json",
    ]  # fmt: skip
    op.env["CS"] = CLIENT_SECRET
    run = await op.run(*flags, stdin=refresh + "\n")
    assert run.code == 0, run.err
    assert f"OAuth2 access token OK from {server.token_url}" in run.err
    assert f"SMTP login OK at {mail_lab.host}:{mail_lab.submission_port}: 235" in run.err
    assert f"IMAP login OK at {mail_lab.host}:{mail_lab.imaps_port}" in run.err
    mailbox_id = json.loads(run.out)["mailbox_id"]
    rows = await op.fetch("SELECT * FROM mailboxes WHERE id = $1", mailbox_id)
    row = dict(rows[0])
    box = SecretBox(op.settings.secret_keys())
    assert row["auth_method"] == AuthMethod.OAUTH2.value and row["oauth_token_url"] == server.token_url
    # --check's refresh rotated the token: the one stored is the one the provider still takes.
    stored = box.decrypt(row["oauth_refresh_token_ciphertext"])
    assert stored != refresh and server.live_refresh_tokens(user.address) == [stored]
    assert box.decrypt(row["oauth_client_secret_ciphertext"]) == CLIENT_SECRET
    assert box.decrypt(row["secret_ciphertext"]) == ""
    text = json.dumps({k: str(v) for k, v in row.items()}) + run.out + run.err
    assert not any(s in text for s in [refresh, stored, CLIENT_SECRET, *server.access_tokens(user.address)])

    # A revoked sign-in fails the check, says what to do, and stores nothing.
    other = new_user(mail_lab, "oe")
    dead = server.issue_refresh_token(other.address)
    server.revoke_user(other.address)
    flags[flags.index(user.address)] = other.address
    failed = await op.run(*flags, stdin=dead + "\n")
    assert failed.code == 1 and "--check: OAuth2 sign-in of" in failed.err and "invalid_grant" in failed.err
    assert f"starter authorize --mailbox {other.address}" in failed.err and "nothing was stored" in failed.err
    assert not await op.fetch("SELECT 1 FROM mailboxes WHERE address = $1", other.address)
    assert dead not in failed.err + failed.out


# --- starter authorize: the browser flow (PKCE, loopback redirect) and the device flow -----------------


async def _enroll_via_starter(op: Op, lab: MailLab, server: TokenServer, user: LabUser) -> None:
    op.env["CS"] = CLIENT_SECRET
    run = await op.run(
        "enroll", "--mailbox", user.address, "--user", "oauth-auth", "--timezone", "UTC", "--auth", "oauth2",
        "--oauth-provider", "custom", "--oauth-token-url", server.token_url, "--oauth-client-id", CLIENT_ID,
        "--oauth-scopes", SCOPES, "--smtp-host", lab.host, "--smtp-port", str(lab.submission_port),
        "--smtp-security", "starttls", "--no-verify-tls", "--ramp-start", "0", "--ramp-ceiling", "0",
        "--oauth-client-secret-env", "CS", "--oauth-refresh-token-stdin",
        stdin=server.issue_refresh_token(user.address) + "\n",
    )  # fmt: skip
    assert run.code == 0, run.err


async def _authorize(op: Op, *argv: str, step: Callable[[str], Awaitable[bool]]) -> Run:
    """`starter authorize` in-process; `step(stderr so far)` plays the user's part until it returns True."""
    out, err = io.StringIO(), io.StringIO()
    task = asyncio.create_task(
        cli.run(["authorize", *argv], env=dict(op.env), stdin=io.StringIO(""), stdout=out, stderr=err)
    )
    for _ in range(200):
        if task.done() or await step(err.getvalue()):
            break
        await asyncio.sleep(0.05)
    code = await asyncio.wait_for(task, 30)
    return Run(code, out.getvalue(), err.getvalue())


def _browser(pages: list[httpx2.Response]) -> Callable[[str], Awaitable[bool]]:
    """The user's browser: opens the address the starter printed, once; the provider signs the user in (or
    declines) and redirects to the starter's loopback listener, whose page lands in `pages`."""

    async def step(err: str) -> bool:
        if "Sign in as" not in err or pages:
            return False
        url = err.split("Sign in as", 1)[1].split("\n", 2)[1].strip()
        async with httpx2.AsyncClient(follow_redirects=True, timeout=10) as browser:
            pages.append(await browser.get(url))
        return True

    return step


async def test_authorize_signs_in_with_pkce_and_a_loopback_redirect_and_resumes_the_mailbox(
    mail_lab: MailLab, op: Op, worker: None, server: TokenServer
) -> None:
    user = new_user(mail_lab, "oz")
    await _enroll_via_starter(op, mail_lab, server, user)
    old = server.live_refresh_tokens(user.address)
    server.revoke_user(user.address)
    reason = f"OAuth2 sign-in refused; sign in again with `starter authorize --mailbox {user.address}`"
    assert (await op.run("pause", "--mailbox", user.address, "--reason", reason)).code == 0
    server.sign_in_as = user.address
    pages: list[httpx2.Response] = []
    authorize = ("--mailbox", user.address, "--authorize-url", server.authorize_url, "--no-browser")
    run = await _authorize(op, *authorize, "--json", step=_browser(pages))
    assert run.code == 0, run.err
    assert [p.status_code for p in pages] == [200] and "Signed in." in pages[0].text
    asked = parse_qs(pages[0].history[0].url.query.decode())  # what the authorization endpoint was sent
    assert asked["code_challenge_method"] == ["S256"] and asked["login_hint"] == [user.address]
    assert urlsplit(asked["redirect_uri"][0]).hostname == "127.0.0.1"
    result = json.loads(run.out)
    assert result["address"] == user.address and result["signed_in"] is True and result["resumed"] is True
    rows = await op.fetch(
        "SELECT state::text, oauth_refresh_token_ciphertext FROM mailboxes WHERE address = $1", user.address
    )
    stored = SecretBox(op.settings.secret_keys()).decrypt(rows[0]["oauth_refresh_token_ciphertext"])
    assert rows[0]["state"] == "active"
    assert stored not in old and server.live_refresh_tokens(user.address) == [stored]  # from the code grant
    assert stored not in run.out + run.err

    # Declined at the provider: nothing is stored.
    server.sign_in_as = None
    run = await _authorize(op, *authorize, step=_browser([]))
    assert run.code == 1 and "access_denied (the sign-in was declined); nothing was stored" in run.err
    again = await op.fetch(
        "SELECT oauth_refresh_token_ciphertext FROM mailboxes WHERE address = $1", user.address
    )
    assert again[0]["oauth_refresh_token_ciphertext"] == rows[0]["oauth_refresh_token_ciphertext"]


async def test_authorize_with_the_device_flow_and_refusals(
    mail_lab: MailLab, op: Op, worker: None, server: TokenServer
) -> None:
    user = new_user(mail_lab, "od")
    await _enroll_via_starter(op, mail_lab, server, user)

    async def approve(err: str) -> bool:
        """The user enters the code on another device and approves."""
        if "enter the code" not in err:
            return False
        server.approve_device(err.rsplit("enter the code", 1)[1].split()[0], user.address)
        return True

    run = await _authorize(op, "--mailbox", user.address, "--device", "--device-url", server.device_url,
                           step=approve)  # fmt: skip
    assert run.code == 0, run.err
    assert f"Signed in {user.address}: its new refresh token is stored" in run.out
    rows = await op.fetch(
        "SELECT oauth_refresh_token_ciphertext FROM mailboxes WHERE address = $1", user.address
    )
    stored = SecretBox(op.settings.secret_keys()).decrypt(rows[0]["oauth_refresh_token_ciphertext"])
    assert stored in server.live_refresh_tokens(user.address)

    async def nothing(err: str) -> bool:
        return False

    no_url = await _authorize(op, "--mailbox", user.address, step=nothing)
    assert no_url.code == 2 and "--oauth-provider custom needs --authorize-url URL" in no_url.err
    plain = await _authorize(op, "--mailbox", "nobody@lab.test", "--device", step=nothing)
    assert plain.code == 1 and "no such mailbox is enrolled" in plain.err


def test_a_csv_row_can_enroll_an_oauth2_mailbox_and_keeps_its_secrets_apart() -> None:
    text = (
        "mailbox,user,timezone,auth,oauth_provider,oauth_client_id,oauth_client_secret_env,"
        "oauth_refresh_token_env,smtp_host,smtp_port,username\n"
        "ana@corp.test,ana,UTC,oauth2,microsoft,client-9,CS,RT,,,\n"
        "bob@corp.test,bob,UTC,oauth2,google,client-9,,,,,\n"
        "cid@corp.test,cid,UTC,,,client-9,,,smtp.corp.test,587,cid\n"
    )
    rows = parse_csv(text, {"CS": "cs-value", "RT": "rt-value"}, ScheduleSettings())
    ana, bob, cid = rows
    assert isinstance(ana, ParsedRow) and ana.request.smtp.host == "smtp.office365.com"
    assert ana.request.secrets == {
        "secret": "",
        "oauth_client_secret": "cs-value",
        "oauth_refresh_token": "rt-value",
    }
    assert not isinstance(bob, ParsedRow) and bob.problems == [
        "no OAuth2 refresh token: fill the oauth_refresh_token column (the OAuth2 refresh token) or "
        "oauth_refresh_token_env (the name of an environment variable holding it)"
    ]
    assert not isinstance(cid, ParsedRow)
    assert any("oauth_client_id given without auth oauth2" in p for p in cid.problems), cid.problems
