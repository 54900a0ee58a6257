-- Issue #13 items 5 and 6: the per-user caps count a narrow table of permits per user and second, as
-- the global caps count global_permits (0003), instead of the user's ledger rows. Each count read the
-- user's rows inside the window, message text and all: at the benchmark's rate about 140 buffers per
-- count, four counts per send (two windows, in the look before connecting and in the claim). A user's
-- permits of the last hour are at most one row per second here, a few buffers.
--
-- The ledger keeps permit_at (reports and drills read it); this table only answers "how many in the
-- window". Second s holds the user's permits in [s, s + 1), read as every second a window touches, so a
-- count is never too low; its "oldest" is s + 1. The claim forgets a user's seconds no window reaches
-- (CAP_HOUR_SECONDS is at most 3,600).
--
-- During a rolling deploy, a claim that an older worker's session was running while this commits still
-- records its permit in the ledger only: for an hour at most, such a user's windows may admit as many
-- extra sends as there were such claims in flight (a few at most).
CREATE TABLE user_permits (
    user_id TEXT NOT NULL,
    second  BIGINT NOT NULL,
    permits INT NOT NULL,
    PRIMARY KEY (user_id, second)
);

INSERT INTO user_permits (user_id, second, permits)
SELECT user_id, floor(extract(epoch FROM permit_at))::BIGINT, count(*) FROM send_ledger
WHERE permit_at > now() - interval '3602 seconds'
GROUP BY 1, 2;

CREATE OR REPLACE FUNCTION cap_counts(
    p_user TEXT, p_scopes TEXT[], p_seconds FLOAT8[], p_day DATE DEFAULT NULL,
    OUT now_epoch FLOAT8, OUT counts INT[], OUT oldest FLOAT8[]
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$  -- volatile: it reads the clock
DECLARE
    n INT;
    o FLOAT8;
BEGIN
    -- p_day is no longer needed (the user's permits are not read from the day's ledger partitions);
    -- kept so that callers of 0021's signature go on working.
    now_epoch := extract(epoch FROM clock_timestamp());
    counts := '{}';
    oldest := '{}';
    FOR i IN 1 .. coalesce(array_length(p_scopes, 1), 0) LOOP
        IF p_scopes[i] = 'user' THEN
            SELECT coalesce(sum(permits), 0), min(second) + 1 INTO n, o FROM user_permits
            WHERE user_id = p_user AND second > now_epoch - p_seconds[i] - 1;
        ELSE
            SELECT coalesce(sum(permits), 0), min(second) + 1 INTO n, o FROM global_permits
            WHERE second > now_epoch - p_seconds[i] - 1;
        END IF;
        counts := counts || n;
        oldest := oldest || o;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION cap_claim(
    p_key TEXT, p_user TEXT, p_scopes TEXT[], p_seconds FLOAT8[], p_caps INT[], p_day DATE DEFAULT NULL,
    OUT claimed BOOLEAN, OUT room BOOLEAN, OUT now_epoch FLOAT8, OUT counts INT[], OUT oldest FLOAT8[]
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
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
        INSERT INTO user_permits (user_id, second, permits) VALUES (p_user, floor(now_epoch)::BIGINT, 1)
        ON CONFLICT (user_id, second) DO UPDATE SET permits = user_permits.permits + 1
        RETURNING (xmax = 0) INTO new_second;
        IF new_second THEN
            DELETE FROM user_permits WHERE user_id = p_user AND second < now_epoch - 3602;
        END IF;
        INSERT INTO global_permits (second, permits) VALUES (floor(now_epoch)::BIGINT, 1)
        ON CONFLICT (second) DO UPDATE SET permits = global_permits.permits + 1
        RETURNING (xmax = 0) INTO new_second;
        IF new_second THEN
            -- Once a second: forget the seconds no window reaches (the hour window is at most 3,600 s).
            DELETE FROM global_permits WHERE second < now_epoch - 3602;
        END IF;
    END IF;
END $$;
