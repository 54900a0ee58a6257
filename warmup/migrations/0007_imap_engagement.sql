-- Issue #11: where a mailbox reads its mail (IMAP) and how it engages with the warmup mail it receives.
-- imap_host '' = no IMAP settings: the mailbox still sends and receives, engagement is off.
-- imap_username '' = the SMTP username; imap_secret_ciphertext NULL = the SMTP password.
ALTER TABLE mailboxes
    ADD COLUMN imap_host TEXT NOT NULL DEFAULT '',
    ADD COLUMN imap_port INT NOT NULL DEFAULT 993 CHECK (imap_port BETWEEN 1 AND 65535),
    ADD COLUMN imap_security TEXT NOT NULL DEFAULT 'tls' CHECK (imap_security IN ('tls', 'starttls', 'none')),
    ADD COLUMN imap_username TEXT NOT NULL DEFAULT '',
    ADD COLUMN imap_secret_ciphertext TEXT,
    ADD COLUMN engagement_on BOOLEAN NOT NULL DEFAULT FALSE,  -- imap_host <> '': the workflow runs inbox sessions
    ADD COLUMN inbox_sessions INT NOT NULL DEFAULT 4 CHECK (inbox_sessions BETWEEN 1 AND 24),
    ADD COLUMN read_rate DOUBLE PRECISION NOT NULL DEFAULT 0.95 CHECK (read_rate BETWEEN 0 AND 1),
    ADD COLUMN rescue_rate DOUBLE PRECISION NOT NULL DEFAULT 0.85 CHECK (rescue_rate BETWEEN 0 AND 1),
    ADD COLUMN important_rate DOUBLE PRECISION NOT NULL DEFAULT 0.3 CHECK (important_rate BETWEEN 0 AND 1),
    ADD COLUMN reply_rate DOUBLE PRECISION NOT NULL DEFAULT 0.3 CHECK (reply_rate BETWEEN 0 AND 1),
    ADD COLUMN dwell_min_seconds DOUBLE PRECISION NOT NULL DEFAULT 5 CHECK (dwell_min_seconds >= 0),
    ADD COLUMN dwell_max_seconds DOUBLE PRECISION NOT NULL DEFAULT 60 CHECK (dwell_max_seconds >= dwell_min_seconds),
    ADD COLUMN reply_delay_min_minutes DOUBLE PRECISION NOT NULL DEFAULT 45
        CHECK (reply_delay_min_minutes >= 0),
    ADD COLUMN reply_delay_max_minutes DOUBLE PRECISION NOT NULL DEFAULT 300
        CHECK (reply_delay_max_minutes >= reply_delay_min_minutes);
