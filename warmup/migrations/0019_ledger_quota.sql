-- Issue #16 item 4: the dashboard's "sent and quota per day". The day's quota lives in the mailbox
-- workflow's state; each send records the quota it was dispatched under, so a past day's quota is read
-- from its rows (0 for rows written before this column). A constant default: no table rewrite.
ALTER TABLE send_ledger ADD COLUMN quota INT NOT NULL DEFAULT 0;
