-- Media links (agents' files behind `/media/{token}` for channels that can only carry a link).
-- `id` is the SHA-256 of the random token sent to the consumer, so that reading this table
-- does not yield working links; the row says whose file it is and until when it is served.
CREATE TABLE media_links (
    id            TEXT    PRIMARY KEY,
    consumer_key  TEXT    NOT NULL,
    relative_path TEXT    NOT NULL,
    file_type     TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX media_links_expires_idx ON media_links (expires_at);
