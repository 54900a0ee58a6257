-- Users, mailboxes and the send ledger. Status values are a PostgreSQL enum so that a
-- misspelt status ('sent' vs 'SENT', the audit's bug #1) is an error, never a silent zero.
CREATE TYPE send_status AS ENUM ('PENDING', 'SENDING', 'SENT', 'FAILED', 'UNKNOWN', 'REPLIED');
CREATE TYPE mailbox_state AS ENUM ('active', 'paused', 'removed');
CREATE TYPE smtp_security AS ENUM ('starttls', 'tls', 'none');

CREATE TABLE users (
    id               TEXT PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    plan             TEXT NOT NULL DEFAULT 'free',
    plan_daily_limit INT CHECK (plan_daily_limit IS NULL OR plan_daily_limit >= 0),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE mailboxes (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users(id),
    address           TEXT NOT NULL UNIQUE,
    smtp_host         TEXT NOT NULL,
    smtp_port         INT NOT NULL CHECK (smtp_port BETWEEN 1 AND 65535),
    smtp_security     smtp_security NOT NULL,
    smtp_username     TEXT NOT NULL,
    secret_ciphertext TEXT NOT NULL,
    verify_tls        BOOLEAN NOT NULL DEFAULT TRUE,
    timezone          TEXT NOT NULL,
    window_start_hour INT NOT NULL CHECK (window_start_hour BETWEEN 0 AND 23),
    window_end_hour   INT NOT NULL CHECK (window_end_hour BETWEEN 1 AND 24),
    delay_min_minutes DOUBLE PRECISION NOT NULL CHECK (delay_min_minutes > 0),
    delay_max_minutes DOUBLE PRECISION NOT NULL CHECK (delay_max_minutes >= delay_min_minutes),
    ramp_start        INT NOT NULL CHECK (ramp_start >= 0),
    ramp_increment    INT NOT NULL CHECK (ramp_increment >= 0),
    ramp_ceiling      INT NOT NULL CHECK (ramp_ceiling >= ramp_start),
    ramp_variance     DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (ramp_variance BETWEEN 0 AND 0.5),
    spread_over_window BOOLEAN NOT NULL DEFAULT TRUE,
    state             mailbox_state NOT NULL DEFAULT 'active',
    pause_reason      TEXT NOT NULL DEFAULT '',
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (window_start_hour < window_end_hour)
);
CREATE INDEX mailboxes_user ON mailboxes (user_id);
CREATE INDEX mailboxes_active ON mailboxes (id) WHERE state = 'active';

-- One row per warmup email, keyed by mailbox + local day + slot (the idempotency key).
CREATE TABLE send_ledger (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    sender_id       BIGINT NOT NULL REFERENCES mailboxes(id),
    recipient_id    BIGINT NOT NULL REFERENCES mailboxes(id),
    day             DATE NOT NULL,
    slot            INT NOT NULL,
    message_id      TEXT NOT NULL,
    message         TEXT NOT NULL,
    status          send_status NOT NULL DEFAULT 'PENDING',
    planned_at      TIMESTAMPTZ NOT NULL,
    dispatched_at   TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at         TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INT NOT NULL DEFAULT 0,
    smtp_code       INT,
    error           TEXT NOT NULL DEFAULT '',
    CHECK (sender_id <> recipient_id)
);
CREATE INDEX send_ledger_sender_day ON send_ledger (sender_id, day, status);
CREATE INDEX send_ledger_status_sent_at ON send_ledger (status, sent_at);
