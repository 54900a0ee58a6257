-- Issue #11: a reply is a warmup email of its own (its own idempotency key, slot, caps), linked to the
-- email it answers. UNIQUE: an email is answered at most once, whatever retries or races happen.
ALTER TABLE send_ledger ADD COLUMN in_reply_to BIGINT UNIQUE REFERENCES send_ledger(id);
