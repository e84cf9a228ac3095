-- 0004: fewer pages written per post. A post's commit wrote ~12 pages to the WAL; this takes it to ~9.
-- The spread statistics of a message move into its row in messages: the message_spread table (a
-- row and a primary-key entry of its own per post) goes. The index by kind covers the ledger's
-- kinds only: replaying the ledger is what reads it, and posts no longer add to it.

ALTER TABLE messages ADD COLUMN first_seen REAL NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN from_peer BLOB;
ALTER TABLE messages ADD COLUMN forwarded_to INTEGER NOT NULL DEFAULT 0;

UPDATE messages SET
    first_seen = COALESCE((SELECT s.first_seen FROM message_spread s WHERE s.message_id = messages.id), 0),
    from_peer = (SELECT s.from_peer FROM message_spread s WHERE s.message_id = messages.id),
    forwarded_to = COALESCE((SELECT s.forwarded_to FROM message_spread s WHERE s.message_id = messages.id), 0);

DROP TABLE message_spread;

DROP INDEX events_kind;
CREATE INDEX events_ledger ON events (kind, rowid) WHERE kind IN ('genesis', 'enroll', 'send', 'claim');
