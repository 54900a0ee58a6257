-- Issue #16: the HTTP API's credentials and its event feed.
--
-- api_tokens: a token is shown once at creation and only its sha256 is kept (a 256-bit random token
-- needs no slow hash). user_id NULL is an operator token (fleet-wide calls); otherwise every request
-- with it is scoped to that user, as `--user` is in the CLI.
CREATE TABLE api_tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_sha256 BYTEA NOT NULL UNIQUE,
    prefix TEXT NOT NULL,          -- the first characters, to tell tokens apart in `starter token list`
    user_id TEXT,                  -- NULL: operator
    label TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- events: what the embedding product polls (`GET /v1/events?after=<id>`). Written by a trigger on the
-- mailboxes table, so every writer of a pause (the starter, the API, the send activity's pause on a
-- refused login or a refused DATA) records its event in the same transaction, without a code path to
-- forget. A refused login is `mailbox.sign_in_needed`: the customer must sign in again.
CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id TEXT NOT NULL,
    mailbox_id BIGINT NOT NULL,
    address TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX events_user_id ON events (user_id, id);

CREATE FUNCTION record_mailbox_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind TEXT;
BEGIN
    IF NEW.state IS NOT DISTINCT FROM OLD.state THEN
        RETURN NEW;
    END IF;
    IF NEW.state = 'paused' THEN
        kind := CASE WHEN NEW.pause_reason ILIKE '%login%' OR NEW.pause_reason ILIKE '%auth%'
                     THEN 'mailbox.sign_in_needed' ELSE 'mailbox.paused' END;
    ELSIF NEW.state = 'active' THEN
        kind := 'mailbox.resumed';
    ELSE
        kind := 'mailbox.removed';
    END IF;
    INSERT INTO events (user_id, mailbox_id, address, kind, reason)
    VALUES (NEW.user_id, NEW.id, NEW.address, kind, coalesce(NEW.pause_reason, ''));
    RETURN NEW;
END $$;
CREATE TRIGGER mailboxes_events AFTER UPDATE OF state ON mailboxes
    FOR EACH ROW EXECUTE FUNCTION record_mailbox_event();
