-- Messages that arrive in parts that the gateway does not put together (Vonage's
-- concatenated SMS): one row per message and one per part, so that instances receiving
-- different parts at once never overwrite each other. Times are unix milliseconds.

-- One row per message: how many parts it has, when waiting for the rest ends, and who is
-- submitting it.
CREATE TABLE message_part_groups (
    instance      TEXT    NOT NULL,
    group_key     TEXT    NOT NULL,
    total         INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    -- When a message still missing parts is given up: the parts that came are submitted.
    expires_at    INTEGER NOT NULL,
    -- Until when the instance that found the message complete (or expired) may submit it.
    claimed_until INTEGER,
    -- 1 once submitted; the row (and its parts' rows, emptied) stay until forget_at, so a
    -- part retried later is known.
    done          INTEGER NOT NULL DEFAULT 0,
    forget_at     INTEGER NOT NULL,
    PRIMARY KEY (instance, group_key)
);
CREATE INDEX message_part_groups_expires_idx ON message_part_groups (done, expires_at);
CREATE INDEX message_part_groups_forget_idx ON message_part_groups (forget_at);

-- One row per part received, with the gateway's id of the part (a part with the same
-- number and another id belongs to a later message that reuses the reference).
CREATE TABLE message_parts (
    instance  TEXT    NOT NULL,
    group_key TEXT    NOT NULL,
    part      INTEGER NOT NULL,
    part_id   TEXT    NOT NULL,
    body      TEXT    NOT NULL,
    PRIMARY KEY (instance, group_key, part)
);
