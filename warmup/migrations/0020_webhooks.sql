-- Issue #16 item 3: webhooks, the events feed pushed to the embedding product (warmup/webhooks.py).
--
-- webhooks: a user's endpoints. The signing secret is shown once, at creation, and stored encrypted
-- like the passwords (rotated by `starter rotate-key`).
CREATE TABLE webhooks (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id TEXT NOT NULL,
    url TEXT NOT NULL,
    secret_ciphertext TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    removed_at TIMESTAMPTZ
);
CREATE INDEX webhooks_user ON webhooks (user_id) WHERE removed_at IS NULL;

-- One row per event and endpoint, written with the event (the trigger below), so an event can be
-- neither lost nor sent to an endpoint added after it. The delivery activity sends what is due, and a
-- row delivered is never sent again; a failed attempt backs off until `next_attempt_at`.
CREATE TABLE webhook_deliveries (
    event_id BIGINT NOT NULL REFERENCES events (id),
    webhook_id BIGINT NOT NULL REFERENCES webhooks (id),
    attempts INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at TIMESTAMPTZ,
    failed_at TIMESTAMPTZ,  -- given up after the last attempt
    last_error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (event_id, webhook_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

CREATE FUNCTION queue_webhook_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (event_id, webhook_id)
    SELECT NEW.id, w.id FROM webhooks w WHERE w.user_id = NEW.user_id AND w.removed_at IS NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER events_webhooks AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION queue_webhook_deliveries();

-- Events the activities record (engagement off, placement low) once per mailbox and day: a retried
-- activity records nothing twice.
ALTER TABLE events ADD COLUMN dedup_key TEXT;
CREATE UNIQUE INDEX events_dedup ON events (dedup_key) WHERE dedup_key IS NOT NULL;
