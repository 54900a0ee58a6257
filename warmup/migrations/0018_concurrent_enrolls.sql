-- Issue #16 item 5: enrolls run side by side (a bulk import of 100,000 mailboxes in minutes).
--
-- Migration 0010 numbered pick slots max + 1 under an advisory lock held to commit, and an enroll's
-- transaction spans its Temporal call, so every enroll waited for the one before it (9 rows a second).
-- A sequence hands out slots without a lock. The one gap it can leave is a rolled-back insert's slot:
-- a probe that lands on a gap is drawn again, as on a paused mailbox, so gaps cost a probe and add no
-- bias (tests/test_pool_rules.py). A re-enroll must not burn a slot, and ON CONFLICT fires this trigger
-- before it finds the conflict: an address already stored gets -1, which the conflict's update never
-- writes (a mailbox keeps its slot for good).
CREATE SEQUENCE mailbox_pick_slots AS BIGINT MINVALUE 0 START 0;
SELECT setval('mailbox_pick_slots', coalesce(max(pick_slot) + 1, 0), false) FROM mailboxes;

CREATE OR REPLACE FUNCTION assign_pick_slot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM mailboxes WHERE address = NEW.address) THEN
        NEW.pick_slot := -1;
    ELSE
        NEW.pick_slot := nextval('mailbox_pick_slots');
    END IF;
    RETURN NEW;
END $$;
