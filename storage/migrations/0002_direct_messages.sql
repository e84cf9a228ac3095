-- 0002: direct messages received over the mesh (ROUTED frames addressed to this node).
-- They are not events: they are not gossiped, only delivered hop by hop and acknowledged.

CREATE TABLE direct_messages (
    msg_id      BLOB PRIMARY KEY,
    src         BLOB    NOT NULL,
    content     TEXT    NOT NULL,
    sent_ts     INTEGER NOT NULL,
    received_at REAL    NOT NULL,
    path        BLOB    NOT NULL,
    hops        INTEGER NOT NULL
);
CREATE INDEX direct_messages_received ON direct_messages (received_at);
