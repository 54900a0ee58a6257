"""Users and mailboxes in PostgreSQL: the records the starter writes and the activity reads."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from warmup.db import Conn
from warmup.models import MailboxState, RampSettings, ScheduleSettings, SmtpSecurity


@dataclass(frozen=True)
class SmtpAccount:
    host: str
    port: int
    security: SmtpSecurity
    username: str
    verify_tls: bool = True


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

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]

    @property
    def workflow_id(self) -> str:
        return workflow_id_for(self.id)


def workflow_id_for(mailbox_id: int) -> str:
    return f"mailbox-{mailbox_id}"


_COLUMNS = (
    "id, user_id, address, smtp_host, smtp_port, smtp_security, smtp_username, secret_ciphertext,"
    " verify_tls, timezone, window_start_hour, window_end_hour, delay_min_minutes, delay_max_minutes,"
    " ramp_start, ramp_increment, ramp_ceiling, ramp_variance, weekdays_only, spread_over_window, state,"
    " pause_reason"
)


def _record(row: asyncpg.Record) -> MailboxRecord:
    return MailboxRecord(
        id=int(row["id"]),
        user_id=row["user_id"],
        address=row["address"],
        smtp=SmtpAccount(
            host=row["smtp_host"],
            port=int(row["smtp_port"]),
            security=SmtpSecurity(row["smtp_security"]),
            username=row["smtp_username"],
            verify_tls=bool(row["verify_tls"]),
        ),
        secret_ciphertext=row["secret_ciphertext"],
        schedule=ScheduleSettings(
            timezone=row["timezone"],
            window_start_hour=int(row["window_start_hour"]),
            window_end_hour=int(row["window_end_hour"]),
            delay_min_minutes=float(row["delay_min_minutes"]),
            delay_max_minutes=float(row["delay_max_minutes"]),
            ramp=RampSettings(
                start_volume=int(row["ramp_start"]),
                daily_increment=int(row["ramp_increment"]),
                ceiling=int(row["ramp_ceiling"]),
                daily_variance=float(row["ramp_variance"]),
            ),
            spread_over_window=bool(row["spread_over_window"]),
            weekdays_only=bool(row["weekdays_only"]),
        ),
        state=MailboxState(row["state"]),
        pause_reason=row["pause_reason"],
    )


# The columns `schedule_values` fills, in its order (for writers that name columns, such as COPY).
SCHEDULE_COLUMNS = (
    "timezone",
    "window_start_hour",
    "window_end_hour",
    "delay_min_minutes",
    "delay_max_minutes",
    "ramp_start",
    "ramp_increment",
    "ramp_ceiling",
    "ramp_variance",
    "weekdays_only",
)


def schedule_values(s: ScheduleSettings) -> tuple[str, int, int, float, float, int, int, int, float, bool]:
    """The schedule's columns, timezone to ramp_variance then weekdays_only: one list for every writer."""
    r = s.ramp
    return (
        s.timezone,
        s.window_start_hour,
        s.window_end_hour,
        s.delay_min_minutes,
        s.delay_max_minutes,
        r.start_volume,
        r.daily_increment,
        r.ceiling,
        r.daily_variance,
        s.weekdays_only,
    )


async def get_mailbox(conn: Conn, mailbox_id: int) -> MailboxRecord | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM mailboxes WHERE id = $1", mailbox_id)
    return _record(row) if row else None


async def get_mailbox_by_address(conn: Conn, address: str) -> MailboxRecord | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM mailboxes WHERE address = $1", address.lower())
    return _record(row) if row else None


async def ensure_user(conn: Conn, user_id: str) -> None:
    await conn.execute("INSERT INTO users (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", user_id)


async def upsert_mailbox(
    conn: Conn,
    *,
    user_id: str,
    address: str,
    smtp: SmtpAccount,
    secret_ciphertext: str,
    schedule: ScheduleSettings,
) -> MailboxRecord:
    """Insert or update by address; re-enrolling re-activates a removed mailbox. Returns the stored row."""
    await ensure_user(conn, user_id)
    row = await conn.fetchrow(
        f"""
        INSERT INTO mailboxes (user_id, address, smtp_host, smtp_port, smtp_security, smtp_username,
            secret_ciphertext, verify_tls, timezone, window_start_hour, window_end_hour,
            delay_min_minutes, delay_max_minutes, ramp_start, ramp_increment, ramp_ceiling, ramp_variance,
            weekdays_only, spread_over_window)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
        ON CONFLICT (address) DO UPDATE SET
            smtp_host = EXCLUDED.smtp_host, smtp_port = EXCLUDED.smtp_port,
            smtp_security = EXCLUDED.smtp_security, smtp_username = EXCLUDED.smtp_username,
            secret_ciphertext = EXCLUDED.secret_ciphertext, verify_tls = EXCLUDED.verify_tls,
            timezone = EXCLUDED.timezone, window_start_hour = EXCLUDED.window_start_hour,
            window_end_hour = EXCLUDED.window_end_hour, delay_min_minutes = EXCLUDED.delay_min_minutes,
            delay_max_minutes = EXCLUDED.delay_max_minutes, ramp_start = EXCLUDED.ramp_start,
            ramp_increment = EXCLUDED.ramp_increment, ramp_ceiling = EXCLUDED.ramp_ceiling,
            ramp_variance = EXCLUDED.ramp_variance, weekdays_only = EXCLUDED.weekdays_only,
            spread_over_window = EXCLUDED.spread_over_window,
            state = CASE WHEN mailboxes.state = 'removed'
                THEN 'active'::mailbox_state ELSE mailboxes.state END,
            updated_at = now()
        WHERE mailboxes.user_id = EXCLUDED.user_id
        RETURNING {_COLUMNS}
        """,
        user_id,
        address.lower(),
        smtp.host,
        smtp.port,
        smtp.security.value,
        smtp.username,
        secret_ciphertext,
        smtp.verify_tls,
        *schedule_values(schedule),
        schedule.spread_over_window,
    )
    if row is None:
        # The WHERE clause refused: the address belongs to another user (tenancy).
        raise PermissionError(f"mailbox {address} is enrolled under another user")
    return _record(row)


async def set_state(conn: Conn, mailbox_id: int, state: MailboxState, reason: str = "") -> None:
    await conn.execute(
        "UPDATE mailboxes SET state = $2, pause_reason = $3, updated_at = now() WHERE id = $1",
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
