-- How many times in a row an outbox item failed for the same condition (e.g. LivePerson knows an
-- open conversation the map does not): a typed counter, instead of one read back out of the
-- stored error text. `attempts` counts every failure, so it cannot tell.
ALTER TABLE outbox ADD COLUMN streak_kind TEXT;
ALTER TABLE outbox ADD COLUMN streak BIGINT NOT NULL DEFAULT 0;
