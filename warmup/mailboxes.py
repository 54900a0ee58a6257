"""Users and mailboxes in PostgreSQL: the records the starter writes and the activity reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from warmup import mailbox_settings as ms
from warmup.db import Conn
from warmup.models import ImapSecurity, MailboxState, ScheduleSettings, SmtpSecurity
from warmup.oauth_providers import AuthMethod
from warmup.secrets import SecretBox, SecretKeyError
from warmup.workflow_ids import mailbox_workflow_id


@dataclass(frozen=True)
class SmtpAccount:
    host: str
    port: int
    security: SmtpSecurity
    username: str
    verify_tls: bool = True


@dataclass(frozen=True)
class ImapServer:
    """Where a mailbox reads its mail; `username` "" = the SMTP username."""

    host: str
    port: int = 993
    security: ImapSecurity = ImapSecurity.TLS
    username: str = ""


@dataclass(frozen=True)
class OAuthClient:
    """How a mailbox with `--auth oauth2` gets its access tokens (the secrets stay ciphertexts)."""

    provider: str  # google | microsoft | custom
    token_url: str
    client_id: str
    scopes: str  # space-separated
    tenant: str = ""
    client_secret_ciphertext: str | None = None  # None: a public client
    refresh_token_ciphertext: str = ""


@dataclass(frozen=True)
class MailboxRecord:
    id: int
    user_id: str
    address: str
    smtp: SmtpAccount
    secret_ciphertext: str  # Fernet token; decrypted only inside the send activity
    schedule: ScheduleSettings
    state: MailboxState
    pause_reason: str
    imap: ImapServer | None = None  # None: no IMAP settings, so no engagement
    imap_secret_ciphertext: str | None = None  # None: the IMAP password is the SMTP one
    receiving_off: str = ""  # why it gets no warmup mail (its address was refused), "" = it does
    oauth: OAuthClient | None = None  # None: password login

    @property
    def imap_username(self) -> str:
        return (self.imap.username if self.imap else "") or self.smtp.username

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]

    @property
    def workflow_id(self) -> str:
        return mailbox_workflow_id(self.id)


@dataclass(frozen=True)
class NewMailbox:
    """What is stored for one mailbox, by `starter enroll` or a bulk load (secrets already encrypted)."""

    user_id: str
    address: str
    smtp: SmtpAccount
    secret_ciphertext: str
    schedule: ScheduleSettings
    imap: ImapServer | None = None
    imap_secret_ciphertext: str | None = None
    oauth: OAuthClient | None = None


# Every stored setting (warmup.mailbox_settings) plus what the database itself keeps.
_COLUMN_NAMES = ("id", *ms.COLUMNS, "state", "pause_reason", "receiving_off")
_COLUMNS = ", ".join(_COLUMN_NAMES)


def qualified_columns(alias: str) -> str:
    """The columns `mailbox_record` reads, from the table named `alias` in a join."""
    return ", ".join(f"{alias}.{c}" for c in _COLUMN_NAMES)


def mailbox_record(row: asyncpg.Record) -> MailboxRecord:
    v = ms.from_row(row)
    return MailboxRecord(
        id=int(row["id"]),
        user_id=ms.USER.of(v),
        address=ms.ADDRESS.of(v),
        smtp=SmtpAccount(
            host=ms.SMTP_HOST.of(v),
            port=ms.SMTP_PORT.of(v),
            security=ms.SMTP_SECURITY.of(v),
            username=ms.USERNAME.of(v),
            verify_tls=ms.VERIFY_TLS.of(v),
        ),
        secret_ciphertext=row[ms.SMTP_SECRET.column],
        schedule=ms.schedule_from(v, ScheduleSettings()),
        state=MailboxState(row["state"]),
        pause_reason=row["pause_reason"],
        imap=ImapServer(
            host=ms.IMAP_HOST.of(v),
            port=ms.IMAP_PORT.of(v),
            security=ms.IMAP_SECURITY.of(v),
            username=ms.IMAP_USERNAME.of(v),
        )
        if ms.IMAP_HOST.of(v)
        else None,
        imap_secret_ciphertext=row[ms.IMAP_SECRET.column],
        receiving_off=row["receiving_off"],
        oauth=OAuthClient(
            provider=ms.OAUTH_PROVIDER.of(v),
            token_url=ms.OAUTH_TOKEN_URL.of(v),
            client_id=ms.OAUTH_CLIENT_ID.of(v),
            scopes=ms.OAUTH_SCOPES.of(v),
            tenant=ms.OAUTH_TENANT.of(v),
            client_secret_ciphertext=row[ms.OAUTH_CLIENT_SECRET.column],
            refresh_token_ciphertext=row[ms.OAUTH_REFRESH_TOKEN.column],
        )
        if ms.AUTH.of(v) is AuthMethod.OAUTH2
        else None,
    )


def mailbox_row(m: NewMailbox) -> tuple[object, ...]:
    """The values of `ms.COLUMNS` for one mailbox, for every writer (the upsert, a bulk COPY)."""
    server = m.imap or ImapServer(host="")
    values: dict[str, object] = {
        ms.IMAP_HOST.name: server.host,
        ms.IMAP_PORT.name: server.port,
        ms.IMAP_SECURITY.name: server.security,
        ms.IMAP_USERNAME.name: server.username,
        ms.USER.name: m.user_id,
        ms.ADDRESS.name: m.address.lower(),
        ms.SMTP_HOST.name: m.smtp.host,
        ms.SMTP_PORT.name: m.smtp.port,
        ms.SMTP_SECURITY.name: m.smtp.security,
        ms.USERNAME.name: m.smtp.username,
        ms.VERIFY_TLS.name: m.smtp.verify_tls,
        **ms.schedule_values_of(m.schedule),
    }
    oauth = m.oauth or OAuthClient("", "", "", "")
    values |= {
        ms.AUTH.name: AuthMethod.OAUTH2 if m.oauth else AuthMethod.PASSWORD,
        ms.OAUTH_PROVIDER.name: oauth.provider,
        ms.OAUTH_TENANT.name: oauth.tenant,
        ms.OAUTH_CLIENT_ID.name: oauth.client_id,
        ms.OAUTH_TOKEN_URL.name: oauth.token_url,
        ms.OAUTH_SCOPES.name: oauth.scopes,
    }
    ciphertexts = {ms.SMTP_SECRET.name: m.secret_ciphertext}
    if m.imap_secret_ciphertext is not None:
        ciphertexts[ms.IMAP_SECRET.name] = m.imap_secret_ciphertext
    if m.oauth is not None:
        ciphertexts[ms.OAUTH_REFRESH_TOKEN.name] = m.oauth.refresh_token_ciphertext
        if m.oauth.client_secret_ciphertext is not None:
            ciphertexts[ms.OAUTH_CLIENT_SECRET.name] = m.oauth.client_secret_ciphertext
    return ms.row_values(values, ciphertexts)


_KEYS = (ms.USER.db_column, ms.ADDRESS.db_column)
_UPSERT = f"""
    INSERT INTO mailboxes ({", ".join(ms.COLUMNS)})
    VALUES ({", ".join(f"${i}" for i in range(1, len(ms.COLUMNS) + 1))})
    ON CONFLICT (address) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in ms.COLUMNS if c not in _KEYS)},
        state = CASE WHEN mailboxes.state = 'removed' THEN 'active'::mailbox_state ELSE mailboxes.state END,
        oauth_refresh_token_at = CASE WHEN EXCLUDED.oauth_refresh_token_ciphertext IS NULL
                                      THEN NULL ELSE now() END,
        updated_at = now()
    WHERE mailboxes.user_id = EXCLUDED.user_id
    RETURNING {_COLUMNS}
"""


async def get_mailbox(conn: Conn, mailbox_id: int) -> MailboxRecord | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM mailboxes WHERE id = $1", mailbox_id)
    return mailbox_record(row) if row else None


async def get_mailbox_by_address(conn: Conn, address: str) -> MailboxRecord | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM mailboxes WHERE address = $1", address.lower())
    return mailbox_record(row) if row else None


async def ensure_user(conn: Conn, user_id: str) -> None:
    await ensure_users(conn, [user_id])


async def ensure_users(conn: Conn, user_ids: list[str]) -> None:
    await conn.execute(
        "INSERT INTO users (id) SELECT unnest($1::text[]) ON CONFLICT (id) DO NOTHING", user_ids
    )


_SETTING_COLUMNS = tuple(s.db_column for s in ms.SETTINGS)  # COLUMNS without the ciphertexts
_UNCHANGED = f"""
    SELECT id, ({", ".join(_SETTING_COLUMNS)})
           IS NOT DISTINCT FROM ({", ".join(f"${i}" for i in range(2, len(_SETTING_COLUMNS) + 2))}) AS same,
           {", ".join(x.column for x in ms.SECRETS)}
    FROM mailboxes WHERE address = $1 AND state <> 'removed'
"""


async def stored_unchanged(
    conn: Conn, mailbox: NewMailbox, secrets: Mapping[str, str], box: SecretBox
) -> int | None:
    """The mailbox's id when it is stored (not removed) with exactly these settings and these secrets in
    clear, so enrolling it again would change nothing; else None. Its ciphertexts are ignored: the same
    secret encrypts differently each time."""
    values = mailbox_row(mailbox)[: len(_SETTING_COLUMNS)]
    row = await conn.fetchrow(_UNCHANGED, mailbox.address.lower(), *values)
    if row is None or not row["same"]:
        return None
    for x in ms.SECRETS:
        stored, given = row[x.column], secrets.get(x.name)
        if stored is None or given is None:
            if stored is not None or given is not None:
                return None
            continue
        try:
            if box.decrypt(stored) != given:
                return None
        except SecretKeyError:
            return None  # not readable with today's keys: enrolling again stores it anew
    return int(row["id"])


async def upsert_mailbox(conn: Conn, mailbox: NewMailbox) -> MailboxRecord:
    """Insert or update by address; re-enrolling re-activates a removed mailbox. Returns the stored row."""
    await ensure_user(conn, mailbox.user_id)
    row = await conn.fetchrow(_UPSERT, *mailbox_row(mailbox))
    if row is None:
        # The WHERE clause refused: the address belongs to another user (tenancy).
        raise PermissionError(f"mailbox {mailbox.address} is enrolled under another user")
    return mailbox_record(row)


async def set_state(conn: Conn, mailbox_id: int, state: MailboxState, reason: str = "") -> None:
    """A resume (ACTIVE) also puts the mailbox back in the pool: its owner fixed what was wrong,
    including an address the pool's servers refused."""
    await conn.execute(
        "UPDATE mailboxes SET state = $2, pause_reason = $3, updated_at = now(), receiving_off ="
        " CASE WHEN $2::mailbox_state = 'active' THEN '' ELSE receiving_off END WHERE id = $1",
        mailbox_id,
        state.value,
        reason,
    )


async def pause_mailbox(conn: Conn, mailbox_id: int, reason: str) -> bool:
    """Mark a mailbox paused with `reason` unless it was removed meanwhile; True if it changed."""
    status = await conn.execute(
        "UPDATE mailboxes SET state = 'paused', pause_reason = $2, updated_at = now()"
        " WHERE id = $1 AND state <> 'removed'",
        mailbox_id,
        reason,
    )
    return status != "UPDATE 0"
