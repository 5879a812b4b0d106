-- The timeline of every event (`switchboard trace`): one row per stage an event went through
-- (received, stored, attempt, sent, confirmed, dead_lettered, requeued), written by whichever
-- instance did it. `platform_alias` is the bare id an operator knows when `platform_id` is a
-- channel's composite one (Slack's `ts` of `slack:{channel}:{ts}`, Telegram's `update_id`). `at` is the store's clock (unix ms); `item` the outbox id the event had;
-- `detail` a JSON object. Pruned after `store.trace_retention`.
CREATE TABLE trace (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              BIGINT  NOT NULL,
    instance        TEXT    NOT NULL,
    direction       TEXT    NOT NULL,
    stage           TEXT    NOT NULL,
    channel         TEXT,
    consumer        TEXT,
    conversation_id TEXT,
    platform_id     TEXT,
    platform_alias  TEXT,
    item            BIGINT,
    detail          TEXT    NOT NULL
);
CREATE INDEX trace_at_idx ON trace (at);
CREATE INDEX trace_item_idx ON trace (item) WHERE item IS NOT NULL;
CREATE INDEX trace_platform_idx ON trace (platform_id) WHERE platform_id IS NOT NULL;
CREATE INDEX trace_alias_idx ON trace (platform_alias) WHERE platform_alias IS NOT NULL;
CREATE INDEX trace_conversation_idx ON trace (conversation_id) WHERE conversation_id IS NOT NULL;
CREATE INDEX trace_consumer_idx ON trace (consumer) WHERE consumer IS NOT NULL;
