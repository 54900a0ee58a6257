-- Issue #13 item 6: the send ledger partitioned by day, so a day's queries read a day's rows however
-- long the ledger is, and retention drops a whole day at once (warmup/ledger_retention.py).
--
-- Keys: a unique index of a partitioned table must hold the partition key, so the primary key is
-- (id, day) and the idempotency key is unique per (idempotency_key, day). Nothing is lost: the key is
-- mailbox:day:slot, so one key never has two days. Ids still come from one sequence (a plain one: an
-- identity column on a partitioned table needs PostgreSQL 17, and docker-compose runs 16); it starts
-- where the old identity stopped, and every row keeps its id.
--
-- Foreign keys *to* the ledger are dropped (engagement.ledger_id, bounces.ledger_id, in_reply_to): a
-- key to a partitioned table must name (id, day), so engagement and bounces would have to carry the
-- day through the inbox sessions' writes, and such a key forbids dropping a day while any row points
-- at it. Their writers only insert ids they just read from the ledger, and retention deletes a dropped
-- day's engagement and bounce rows with it (ledger_drop_partitions), so no row points at nothing.
--
-- One answer per email: `in_reply_to UNIQUE` cannot be enforced across partitions (the answer lies in
-- its own day's partition, not the original's), so ledger_replies holds one row per answered email,
-- written by a trigger in the answer's own INSERT. A second answer is skipped silently, as the old
-- ON CONFLICT DO NOTHING did (insert_pending then returns None and the slot sends a new thread).

ALTER TABLE send_ledger RENAME TO send_ledger_unpartitioned;

CREATE SEQUENCE send_ledger_ids AS BIGINT;
SELECT setval('send_ledger_ids', s.last_value, s.is_called) FROM send_ledger_id_seq s;

-- The old table's columns, in its order, with their defaults, NOT NULLs and CHECK (SELECT * keeps
-- working the same); the keys to mailboxes and users again, since LIKE does not copy them. `message`
-- becomes '' once retention cleared it (ledger_clear_bodies); `in_reply_to` stays unique through
-- ledger_replies.
CREATE TABLE send_ledger (LIKE send_ledger_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (day);
ALTER TABLE send_ledger ALTER COLUMN id SET DEFAULT nextval('send_ledger_ids'),
    ADD CONSTRAINT send_ledger_sender_id_fkey FOREIGN KEY (sender_id) REFERENCES mailboxes(id),
    ADD CONSTRAINT send_ledger_recipient_id_fkey FOREIGN KEY (recipient_id) REFERENCES mailboxes(id),
    ADD CONSTRAINT send_ledger_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id);
ALTER SEQUENCE send_ledger_ids OWNED BY send_ledger.id;

-- A row for a day without its partition lands here rather than failing; ledger_ensure_partitions moves
-- such rows into the day's partition when it creates it. Partitions are made days ahead, so it stays
-- empty in practice (and cheap to check).
CREATE TABLE send_ledger_default PARTITION OF send_ledger DEFAULT;

-- The day's partition name: send_ledger_YYYYMMDD.
CREATE FUNCTION ledger_partition_name(p_day DATE) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT 'send_ledger_' || to_char(p_day, 'YYYYMMDD')
$$;

-- The days that have a partition, from their names (every partition is made by the function below).
CREATE FUNCTION ledger_partition_days() RETURNS SETOF DATE LANGUAGE sql STABLE AS $$
    SELECT to_date(substr(c.relname, 13), 'YYYYMMDD')
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'send_ledger'::regclass AND c.relname ~ '^send_ledger_[0-9]{8}$'
    ORDER BY 1
$$;

-- Partitions for p_days days from p_from; returns how many it made. Idempotent, and two callers take
-- turns on the advisory lock (4, 0) (the cap gate has (1, user) and (2, 0), enrolls (3, 0)), so the
-- second finds the first's partitions. Rows already in DEFAULT for a new day move into its partition.
CREATE FUNCTION ledger_ensure_partitions(p_from DATE, p_days INT) RETURNS INT LANGUAGE plpgsql AS $$
DECLARE
    d DATE;
    part TEXT;
    made INT := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(4, 0);
    FOR i IN 0 .. p_days - 1 LOOP
        d := p_from + i;
        part := ledger_partition_name(d);
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        IF EXISTS (SELECT 1 FROM send_ledger_default WHERE day = d) THEN
            -- A new partition may not overlap rows in DEFAULT: take DEFAULT out, move its rows of the
            -- day, put it back, all in this transaction (inserts wait the few ms on the table lock).
            ALTER TABLE send_ledger DETACH PARTITION send_ledger_default;
            EXECUTE format('CREATE TABLE %I PARTITION OF send_ledger FOR VALUES FROM (%L) TO (%L)', part, d, d + 1);
            EXECUTE format('INSERT INTO %I SELECT * FROM send_ledger_default WHERE day = %L', part, d);
            DELETE FROM send_ledger_default WHERE day = d;
            ALTER TABLE send_ledger ATTACH PARTITION send_ledger_default DEFAULT;
        ELSE
            EXECUTE format('CREATE TABLE %I PARTITION OF send_ledger FOR VALUES FROM (%L) TO (%L)', part, d, d + 1);
        END IF;
        made := made + 1;
    END LOOP;
    RETURN made;
END $$;

SELECT ledger_ensure_partitions(d, 1) FROM (SELECT DISTINCT day AS d FROM send_ledger_unpartitioned) days;
SELECT ledger_ensure_partitions(current_date - 2, 10);

INSERT INTO send_ledger SELECT * FROM send_ledger_unpartitioned;

CREATE TABLE ledger_replies (
    in_reply_to     BIGINT PRIMARY KEY,  -- the answered email's id
    idempotency_key TEXT NOT NULL,       -- the answer's key
    day             DATE NOT NULL        -- the answer's day: dropped with its partition
);
CREATE INDEX ledger_replies_day ON ledger_replies (day);
INSERT INTO ledger_replies (in_reply_to, idempotency_key, day)
SELECT in_reply_to, idempotency_key, day FROM send_ledger_unpartitioned WHERE in_reply_to IS NOT NULL;

ALTER TABLE engagement DROP CONSTRAINT engagement_ledger_id_fkey;
ALTER TABLE bounces DROP CONSTRAINT bounces_ledger_id_fkey;
DROP TABLE send_ledger_unpartitioned;  -- and its identity sequence
ALTER SEQUENCE send_ledger_ids RENAME TO send_ledger_id_seq;

-- The same indexes as before, on every partition, the two unique ones with the day.
ALTER TABLE send_ledger ADD CONSTRAINT send_ledger_pkey PRIMARY KEY (id, day);
ALTER TABLE send_ledger ADD CONSTRAINT send_ledger_idempotency_key_key UNIQUE (idempotency_key, day);
CREATE INDEX send_ledger_sender_day ON send_ledger (sender_id, day, status);
CREATE INDEX send_ledger_status_sent_at ON send_ledger (status, sent_at);
CREATE INDEX send_ledger_user_permit ON send_ledger (user_id, permit_at) WHERE permit_at IS NOT NULL;
CREATE INDEX send_ledger_permit ON send_ledger (permit_at) WHERE permit_at IS NOT NULL;
CREATE INDEX send_ledger_recipient_sent ON send_ledger (recipient_id, sent_at) WHERE status IN ('SENT', 'REPLIED');
CREATE INDEX send_ledger_recipient_day ON send_ledger (recipient_id, day, status);

-- Runs before ON CONFLICT looks at the idempotency key, so a row whose key exists already (a retried
-- attempt) is left to ON CONFLICT and claims nothing. Two answers of one email in flight at once: the
-- second's insert here waits for the first's transaction and then finds its row.
CREATE FUNCTION ledger_claim_reply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.in_reply_to IS NULL
       OR EXISTS (SELECT 1 FROM send_ledger WHERE idempotency_key = NEW.idempotency_key AND day = NEW.day) THEN
        RETURN NEW;
    END IF;
    INSERT INTO ledger_replies (in_reply_to, idempotency_key, day)
    VALUES (NEW.in_reply_to, NEW.idempotency_key, NEW.day) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN NULL;  -- answered already: skip the row
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER send_ledger_claim_reply BEFORE INSERT ON send_ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_claim_reply();

-- A forgotten answer (forget_pending: refused before DATA) frees its email, as the old unique column did.
CREATE FUNCTION ledger_release_reply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ledger_replies WHERE in_reply_to = OLD.in_reply_to AND idempotency_key = OLD.idempotency_key;
    RETURN NULL;
END $$;
CREATE TRIGGER send_ledger_release_reply AFTER DELETE ON send_ledger
    FOR EACH ROW WHEN (OLD.in_reply_to IS NOT NULL) EXECUTE FUNCTION ledger_release_reply();

-- The days whose bodies retention has cleared, so each day is read once (the few bodies it kept for a
-- due answer stay until the day is dropped).
CREATE TABLE ledger_trimmed_days (
    day        DATE PRIMARY KEY,
    cleared    INT NOT NULL,
    trimmed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Retention, part 1: clear the text of up to p_limit emails of p_day; returns how many (0 = the day is
-- done). A body an answer is still due for is kept (activities/replies.py threads the answer to it);
-- due_reply skips an email whose body is gone. Idempotent: a cleared row no longer matches.
CREATE FUNCTION ledger_clear_bodies(p_day DATE, p_limit INT) RETURNS INT LANGUAGE plpgsql AS $$
DECLARE
    n INT;
BEGIN
    -- `l.message <> ''` again outside: a row another caller cleared meanwhile is re-checked on its new
    -- version and skipped, so two callers at once clear (and count) each body once.
    UPDATE send_ledger l SET message = ''
    WHERE l.day = p_day AND l.message <> '' AND (l.id, l.day) IN (
        SELECT c.id, c.day FROM send_ledger c
        WHERE c.day = p_day AND c.message <> ''
          AND NOT EXISTS (
              SELECT 1 FROM engagement e
              WHERE e.ledger_id = c.id AND e.reply_due_at IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM ledger_replies r WHERE r.in_reply_to = c.id))
        LIMIT p_limit);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Retention, part 2: drop every day before p_before, with the engagement and bounce rows of its emails
-- and the answers it holds (the rows that pointed into it). placement_days and recipient_refusals
-- carry their own day and stay. Returns the days dropped; idempotent, and takes turns with
-- ledger_ensure_partitions on (4, 0). The deletes come first: a DROP locks the whole ledger until
-- commit, so only the drops themselves run under that lock.
CREATE FUNCTION ledger_drop_partitions(p_before DATE) RETURNS INT LANGUAGE plpgsql AS $$
DECLARE
    d DATE;
    old DATE[];
BEGIN
    PERFORM pg_advisory_xact_lock(4, 0);
    old := ARRAY(SELECT x FROM ledger_partition_days() x WHERE x < p_before);
    FOREACH d IN ARRAY old LOOP
        EXECUTE format('DELETE FROM engagement WHERE ledger_id IN (SELECT id FROM %I)', ledger_partition_name(d));
        EXECUTE format('DELETE FROM bounces WHERE ledger_id IN (SELECT id FROM %I)', ledger_partition_name(d));
    END LOOP;
    -- Stray rows of old days in DEFAULT (a day whose partition was never made) go the same way.
    DELETE FROM engagement WHERE ledger_id IN (SELECT id FROM send_ledger_default WHERE day < p_before);
    DELETE FROM bounces WHERE ledger_id IN (SELECT id FROM send_ledger_default WHERE day < p_before);
    DELETE FROM ledger_replies WHERE day < p_before;
    DELETE FROM ledger_trimmed_days WHERE day < p_before;
    DELETE FROM send_ledger_default WHERE day < p_before;
    FOREACH d IN ARRAY old LOOP
        EXECUTE format('DROP TABLE %I', ledger_partition_name(d));
    END LOOP;
    RETURN coalesce(array_length(old, 1), 0);
END $$;

-- The cap gate on the partitioned ledger (0004's functions, with the send's day). Without a day a
-- user window's count and the claim's UPDATE by key open every partition's index: measured at 40
-- partitions, 3.4 ms a peek and 2.6 ms a claim (under the global lock) against 0.3 and 0.5 ms on one
-- table (bench/ledger_growth.py). With p_day the claim reads the send's own day, and a user window
-- reads p_day - 3 to p_day + 3: at one instant a user's mailboxes are on at most three local dates
-- (UTC-12 to UTC+14), and a send is claimed within its own local day's window (its retries and cap
-- waits end with the window). NULL keeps 0004's behaviour (every day).
DROP FUNCTION cap_claim(TEXT, TEXT, TEXT[], FLOAT8[], INT[]);
DROP FUNCTION cap_counts(TEXT, TEXT[], FLOAT8[]);

CREATE FUNCTION cap_counts(
    p_user TEXT, p_scopes TEXT[], p_seconds FLOAT8[], p_day DATE DEFAULT NULL,
    OUT now_epoch FLOAT8, OUT counts INT[], OUT oldest FLOAT8[]
) LANGUAGE plpgsql AS $$  -- volatile: it reads the clock
DECLARE
    n INT;
    o FLOAT8;
BEGIN
    now_epoch := extract(epoch FROM clock_timestamp());
    counts := '{}';
    oldest := '{}';
    FOR i IN 1 .. coalesce(array_length(p_scopes, 1), 0) LOOP
        IF p_scopes[i] = 'user' AND p_day IS NULL THEN
            SELECT count(*), extract(epoch FROM min(permit_at)) INTO n, o FROM send_ledger
            WHERE user_id = p_user AND permit_at > to_timestamp(now_epoch - p_seconds[i]);
        ELSIF p_scopes[i] = 'user' THEN
            SELECT count(*), extract(epoch FROM min(permit_at)) INTO n, o FROM send_ledger
            WHERE user_id = p_user AND permit_at > to_timestamp(now_epoch - p_seconds[i])
              AND day BETWEEN p_day - 3 AND p_day + 3;
        ELSE
            -- Second s holds permits in [s, s + 1): it touches the window when s + 1 > now - W,
            -- and its permits have all left the window by s + 1 + W, so "oldest" is s + 1.
            SELECT coalesce(sum(permits), 0), min(second) + 1 INTO n, o FROM global_permits
            WHERE second > now_epoch - p_seconds[i] - 1;
        END IF;
        counts := counts || n;
        oldest := oldest || o;
    END LOOP;
END $$;

CREATE FUNCTION cap_claim(
    p_key TEXT, p_user TEXT, p_scopes TEXT[], p_seconds FLOAT8[], p_caps INT[], p_day DATE DEFAULT NULL,
    OUT claimed BOOLEAN, OUT room BOOLEAN, OUT now_epoch FLOAT8, OUT counts INT[], OUT oldest FLOAT8[]
) LANGUAGE plpgsql AS $$
DECLARE
    new_second BOOLEAN;
BEGIN
    -- User lock first, then global, in every session: no deadlock, and two sends of one user (or of
    -- anyone, for the global windows) never both see the last free place.
    PERFORM pg_advisory_xact_lock(1, hashtext(p_user));
    PERFORM pg_advisory_xact_lock(2, 0);
    SELECT c.now_epoch, c.counts, c.oldest INTO now_epoch, counts, oldest
    FROM cap_counts(p_user, p_scopes, p_seconds, p_day) c;
    room := true;
    FOR i IN 1 .. coalesce(array_length(p_caps, 1), 0) LOOP
        IF counts[i] >= p_caps[i] THEN
            room := false;
        END IF;
    END LOOP;
    claimed := false;
    IF NOT room THEN
        RETURN;
    END IF;
    IF p_day IS NULL THEN
        UPDATE send_ledger SET status = 'SENDING', attempts = attempts + 1,
            permit_at = to_timestamp(now_epoch), updated_at = now()
        WHERE idempotency_key = p_key AND status = 'PENDING';
    ELSE
        UPDATE send_ledger SET status = 'SENDING', attempts = attempts + 1,
            permit_at = to_timestamp(now_epoch), updated_at = now()
        WHERE idempotency_key = p_key AND day = p_day AND status = 'PENDING';
    END IF;
    claimed := FOUND;
    IF claimed THEN
        INSERT INTO global_permits (second, permits) VALUES (floor(now_epoch)::BIGINT, 1)
        ON CONFLICT (second) DO UPDATE SET permits = global_permits.permits + 1
        RETURNING (xmax = 0) INTO new_second;
        IF new_second THEN
            -- Once a second: forget the seconds no window reaches (the hour window is at most 3,600 s).
            DELETE FROM global_permits WHERE second < now_epoch - 3602;
        END IF;
    END IF;
END $$;
