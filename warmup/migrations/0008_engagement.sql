-- Issue #11: what each receiving mailbox's inbox sessions found and did, one row per warmup email it
-- received (keyed by the ledger row). Each time is written only after the IMAP server confirmed the
-- action, so a session killed at any point is completed by the next one without doing anything twice.
CREATE TABLE engagement (
    ledger_id    BIGINT PRIMARY KEY REFERENCES send_ledger(id),
    mailbox_id   BIGINT NOT NULL REFERENCES mailboxes(id),  -- the receiver
    found_in     TEXT CHECK (found_in IN ('inbox', 'junk', 'other', 'missing')),  -- where first found
    found_at     TIMESTAMPTZ,
    rescued_at   TIMESTAMPTZ,
    seen_at      TIMESTAMPTZ,
    flagged_at   TIMESTAMPTZ,
    reply_due_at TIMESTAMPTZ,  -- set when the decision is to answer; the answer goes out from a send slot
    handled_at   TIMESTAMPTZ   -- every decided action done (or given up as missing)
);
CREATE INDEX engagement_reply_due ON engagement (reply_due_at) WHERE reply_due_at IS NOT NULL;
-- The emails a session looks for: delivered to this mailbox.
CREATE INDEX send_ledger_recipient_sent ON send_ledger (recipient_id, sent_at) WHERE status IN ('SENT', 'REPLIED');
