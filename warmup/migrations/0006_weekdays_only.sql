-- A mailbox may skip Saturdays and Sundays of its own time zone (`starter update --weekdays-only`).
ALTER TABLE mailboxes ADD COLUMN weekdays_only BOOLEAN NOT NULL DEFAULT FALSE;
