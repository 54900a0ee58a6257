-- Issue #15 item 4: a recipient refused for good at RCPT (550 5.1.1, 5.2.1...) leaves the pool; the
-- sender goes on (activities/recipient_refusals.py).
--
-- receiving_off: why the mailbox gets no warmup mail ('' = it does). The pick and the due answers skip
-- it; its own sends go on. `starter resume` clears it (its owner fixed the address).
ALTER TABLE mailboxes ADD COLUMN receiving_off TEXT NOT NULL DEFAULT '';

-- One row per refused send and receiver (a send refused twice went to two receivers in turn): who
-- refused whom, when, and the server's reply. A sender's rows of a day tell a broken sender (its server
-- refuses everyone) from a dead recipient.
CREATE TABLE recipient_refusals (
    idempotency_key TEXT NOT NULL,
    sender_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    recipient_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    day DATE NOT NULL,
    reply TEXT NOT NULL,
    refused_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (idempotency_key, recipient_id)
);
CREATE INDEX recipient_refusals_sender_day ON recipient_refusals (sender_id, day);
CREATE INDEX recipient_refusals_recipient ON recipient_refusals (recipient_id);

-- The pool rules a send's pick relaxed (activities/recipients.py `Recipient.relaxed`), comma-separated,
-- '' = none: `starter status` says which rules the pool was too small for.
ALTER TABLE send_ledger ADD COLUMN relaxed TEXT NOT NULL DEFAULT '';

-- Bounces (activities/bounces.py): delivery status notifications the sender's inbox sessions found for
-- its warmup mail, one row per failed recipient of a ledger row. `recipient`: the receiver's address is
-- wrong (it left the pool, as after a refusal at RCPT); `sender`: a verdict on the sender's mail, which
-- the placement check counts (a run of them pauses the sender).
CREATE TABLE bounces (
    ledger_id BIGINT NOT NULL REFERENCES send_ledger (id),
    recipient TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('recipient', 'sender')),
    status TEXT NOT NULL,
    diagnostic TEXT NOT NULL,
    found_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (ledger_id, recipient)
);
