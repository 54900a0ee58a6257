-- Never read: a plan's weight comes from WARMUP_PLAN_WEIGHTS by plan name, so one setting changes it
-- for every user of the plan. A second source per user would only be able to disagree.
ALTER TABLE users DROP COLUMN IF EXISTS plan_weight;
