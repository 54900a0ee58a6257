-- Issue #15 item 3: pool rules in recipient selection (activities/recipients.py).
--
-- pick_slot: a dense number per mailbox (0, 1, 2, ... in insert order) so that a pick can draw a
-- uniform slot in [0, max] and look it up in one index probe. Ids cannot serve: every upsert that
-- conflicts (a re-enroll) burns an identity value, so ids have gaps, and a scan "first id >= random"
-- picks the mailbox after a gap more often. Slots have no such gaps: the trigger takes max + 1 under a
-- lock, so a conflicting upsert or a rolled-back insert leaves nothing behind. Paused and removed
-- mailboxes keep their slot (they may come back); a probe that lands on one is simply drawn again,
-- which costs a probe but adds no bias.
ALTER TABLE mailboxes ADD COLUMN pick_slot BIGINT;
UPDATE mailboxes m SET pick_slot = s.n
FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM mailboxes) s
WHERE s.id = m.id;
ALTER TABLE mailboxes ALTER COLUMN pick_slot SET NOT NULL;
CREATE UNIQUE INDEX mailboxes_pick_slot ON mailboxes (pick_slot);
CREATE INDEX mailboxes_pick_active ON mailboxes (pick_slot) WHERE state = 'active';

CREATE FUNCTION assign_pick_slot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- (3, 0): the cap gate uses (1, user) and (2, 0). Held to commit, so two concurrent enrolls take
    -- turns here; enrolling is rare next to sending. Under READ COMMITTED the max below is read after
    -- the lock is granted, so it sees the other enroll's committed row; the unique index turns any other
    -- isolation level's stale read into an error, never a duplicate slot.
    PERFORM pg_advisory_xact_lock(3, 0);
    SELECT coalesce(max(pick_slot) + 1, 0) INTO NEW.pick_slot FROM mailboxes;
    RETURN NEW;
END $$;
CREATE TRIGGER mailboxes_pick_slot BEFORE INSERT ON mailboxes
    FOR EACH ROW EXECUTE FUNCTION assign_pick_slot();

-- A receiver's inbound today (the per-receiver cap): one index range per candidate.
CREATE INDEX send_ledger_recipient_day ON send_ledger (recipient_id, day, status);
