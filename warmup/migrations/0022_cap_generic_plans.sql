-- The cap functions' statements planned once per session (generic plans), not at every call. On the
-- ledger partitioned by day (0021), a custom plan re-prunes the partitions at each call: at 30 days of
-- 20,000 rows a peek took 0.72 ms and a claim 1.31 ms, against 0.17 and 0.25 with generic plans, whose
-- pruning happens when they run (bench/ledger_growth.py). Their statements look rows up by key, user
-- and day, for which one plan fits every value.
ALTER FUNCTION cap_counts(TEXT, TEXT[], FLOAT8[], DATE) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION cap_claim(TEXT, TEXT, TEXT[], FLOAT8[], INT[], DATE) SET plan_cache_mode = force_generic_plan;
