-- The cap gate as server-side functions. A claim holds the global advisory lock; taken from the
-- worker, the lock was held across five client round trips, each waiting on a busy worker's event
-- loop, and that wait (not the counting) capped throughput. One call holds it only while PostgreSQL
-- itself runs the check, the claim and the commit.
--
-- Windows come as parallel arrays (scope 'user' or 'global', length in seconds, cap), so the settings
-- stay in the workers. User windows count the user's ledger rows; global windows add up the
-- per-second totals of global_permits, reading a window as every second it touches (never too few).

CREATE FUNCTION cap_counts(
    p_user TEXT, p_scopes TEXT[], p_seconds FLOAT8[],
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
        IF p_scopes[i] = 'user' THEN
            SELECT count(*), extract(epoch FROM min(permit_at)) INTO n, o FROM send_ledger
            WHERE user_id = p_user AND permit_at > to_timestamp(now_epoch - p_seconds[i]);
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
    p_key TEXT, p_user TEXT, p_scopes TEXT[], p_seconds FLOAT8[], p_caps INT[],
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
    FROM cap_counts(p_user, p_scopes, p_seconds) c;
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
    UPDATE send_ledger SET status = 'SENDING', attempts = attempts + 1, permit_at = to_timestamp(now_epoch),
        updated_at = now()
    WHERE idempotency_key = p_key AND status = 'PENDING';
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
