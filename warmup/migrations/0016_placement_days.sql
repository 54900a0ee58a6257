-- Issue #15 item 1: inbox placement stored per sender and send day, as the receivers' inbox sessions
-- find each email, so a score reads a few small rows (no join of the ledger with `engagement`) and
-- outlives the ledger's rows and message bodies once those are trimmed.
--
-- One row per sender, send day, receiver's mail host (its IMAP host, else its SMTP host: the family is
-- derived from it on read by warmup/placement.py, the one place that knows the families) and place.
CREATE TABLE placement_days (
    sender_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    day DATE NOT NULL,
    host TEXT NOT NULL,
    place TEXT NOT NULL CHECK (place IN ('inbox', 'junk', 'other', 'missing')),
    emails INT NOT NULL,
    PRIMARY KEY (sender_id, day, host, place)
);
CREATE INDEX placement_days_day ON placement_days (day);

-- Counted where `found_in` is first set, in the same transaction: an email's place is written once
-- (activities/engagement.py keeps a recorded value), so a retried or killed session counts nothing twice.
CREATE FUNCTION count_placement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.found_in IS NULL OR (TG_OP = 'UPDATE' AND OLD.found_in IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    INSERT INTO placement_days AS p (sender_id, day, host, place, emails)
    SELECT l.sender_id, l.day, coalesce(nullif(r.imap_host, ''), r.smtp_host), NEW.found_in, 1
    FROM send_ledger l JOIN mailboxes r ON r.id = l.recipient_id
    WHERE l.id = NEW.ledger_id
    ON CONFLICT (sender_id, day, host, place) DO UPDATE SET emails = p.emails + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER engagement_placement AFTER INSERT OR UPDATE OF found_in ON engagement
    FOR EACH ROW EXECUTE FUNCTION count_placement();

-- What the sessions found before this migration.
INSERT INTO placement_days (sender_id, day, host, place, emails)
SELECT l.sender_id, l.day, coalesce(nullif(r.imap_host, ''), r.smtp_host), e.found_in, count(*)
FROM engagement e
JOIN send_ledger l ON l.id = e.ledger_id
JOIN mailboxes r ON r.id = l.recipient_id
WHERE e.found_in IS NOT NULL
GROUP BY 1, 2, 3, 4;
