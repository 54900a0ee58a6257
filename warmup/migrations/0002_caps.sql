-- Cluster-wide caps count "permits": the moment a send was cleared to start DATA. The user is
-- copied onto the ledger so the per-user windows are one index range, not a join.
ALTER TABLE send_ledger ADD COLUMN user_id TEXT REFERENCES users(id);
UPDATE send_ledger l SET user_id = m.user_id FROM mailboxes m WHERE m.id = l.sender_id;
ALTER TABLE send_ledger ALTER COLUMN user_id SET NOT NULL;
ALTER TABLE send_ledger ADD COLUMN permit_at TIMESTAMPTZ;
-- SMTP failures that were retried: the activity, not Temporal, bounds them, because waiting
-- for a cap must not use up the retry budget.
ALTER TABLE send_ledger ADD COLUMN transient_failures INT NOT NULL DEFAULT 0;
-- The cap that last made this send wait, for the status line ('' when none did).
ALTER TABLE send_ledger ADD COLUMN binding_cap TEXT NOT NULL DEFAULT '';
CREATE INDEX send_ledger_user_permit ON send_ledger (user_id, permit_at) WHERE permit_at IS NOT NULL;
CREATE INDEX send_ledger_permit ON send_ledger (permit_at) WHERE permit_at IS NOT NULL;

-- A plan's weight sets its share of the global cap under contention (Temporal fairness weight).
ALTER TABLE users ADD COLUMN plan_weight DOUBLE PRECISION NOT NULL DEFAULT 1 CHECK (plan_weight > 0);
