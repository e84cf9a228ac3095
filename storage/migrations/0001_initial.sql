-- 0001: the tables of the design, carried over from the original schema.
-- Amounts are integer minor units (cents); keys and ids are raw 32-byte blobs.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- The append-only event log. rowid is the local insertion order, which is a causal order:
-- an event is stored only after its predecessor and the send it claims.
CREATE TABLE events (
    rowid       INTEGER PRIMARY KEY,
    id          BLOB    NOT NULL UNIQUE,
    author      BLOB    NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    ts          INTEGER NOT NULL,
    raw         BLOB    NOT NULL,
    received_at REAL    NOT NULL,
    UNIQUE (author, seq)
);
CREATE INDEX events_kind ON events (kind, rowid);

-- Latest event per author (feed head); frozen_at is the lowest forked seq once a fork is proven.
CREATE TABLE feed_heads (
    author    BLOB PRIMARY KEY,
    seq       INTEGER NOT NULL,
    head_id   BLOB    NOT NULL,
    frozen_at INTEGER
);

-- Two valid events with the same author and seq: kept as proof, gossiped to every peer.
CREATE TABLE fork_proofs (
    author      BLOB PRIMARY KEY,
    seq         INTEGER NOT NULL,
    event_a     BLOB    NOT NULL,
    event_b     BLOB    NOT NULL,
    detected_at REAL    NOT NULL
);

-- Events of a frozen author at or after its fork: never applied, kept so claims can be judged.
CREATE TABLE archived_events (
    id     BLOB PRIMARY KEY,
    author BLOB    NOT NULL,
    seq    INTEGER NOT NULL,
    raw    BLOB    NOT NULL
);

-- Enrolled people ("humans" in the original): node is the node that holds the account's key.
CREATE TABLE accounts (
    id          BLOB PRIMARY KEY,
    name        TEXT    NOT NULL,
    node        BLOB    NOT NULL,
    enrolled_at INTEGER NOT NULL
);

-- Materialised balances, written in the same transaction as the event that changes them.
-- balance: effective (forks applied); face: from the account's own chain alone.
CREATE TABLE balances (
    account  BLOB PRIMARY KEY,
    balance  INTEGER NOT NULL,
    face     INTEGER NOT NULL,
    received INTEGER NOT NULL DEFAULT 0,
    sent     INTEGER NOT NULL DEFAULT 0
);

-- Every send ("resource distribution" in the original) and what became of it.
CREATE TABLE sends (
    id        BLOB PRIMARY KEY,
    sender    BLOB    NOT NULL,
    seq       INTEGER NOT NULL,
    recipient BLOB    NOT NULL,
    amount    INTEGER NOT NULL,
    purpose   TEXT    NOT NULL,
    memo      TEXT    NOT NULL,
    ts        INTEGER NOT NULL,
    state     TEXT    NOT NULL CHECK (state IN ('unclaimed', 'claimed', 'void')),
    claim_id  BLOB
);
CREATE INDEX sends_recipient ON sends (recipient, state);
CREATE INDEX sends_sender ON sends (sender, seq);
CREATE INDEX sends_claim ON sends (claim_id);

-- Broadcast messages ("truth messages" in the original).
CREATE TABLE messages (
    id       BLOB PRIMARY KEY,
    author   BLOB    NOT NULL,
    channel  TEXT    NOT NULL,
    priority INTEGER NOT NULL,
    content  TEXT    NOT NULL,
    ts       INTEGER NOT NULL
);
CREATE INDEX messages_channel ON messages (channel, ts);

-- How each message spread through this node.
CREATE TABLE message_spread (
    message_id   BLOB PRIMARY KEY,
    first_seen   REAL    NOT NULL,
    from_peer    BLOB,
    forwarded_to INTEGER NOT NULL DEFAULT 0,
    reach        INTEGER NOT NULL DEFAULT 0
);

-- Mesh nodes this node has heard of ("mesh_nodes").
CREATE TABLE nodes (
    id           BLOB PRIMARY KEY,
    name         TEXT    NOT NULL DEFAULT '',
    address      TEXT    NOT NULL DEFAULT '',
    via          TEXT    NOT NULL DEFAULT '',
    first_seen   REAL    NOT NULL,
    last_seen    REAL    NOT NULL,
    score        REAL    NOT NULL DEFAULT 0,
    banned_until REAL    NOT NULL DEFAULT 0
);

-- Links between nodes with their measured quality ("mesh_connections").
CREATE TABLE connections (
    a          BLOB NOT NULL,
    b          BLOB NOT NULL,
    latency_ms REAL NOT NULL,
    loss       REAL NOT NULL DEFAULT 0,
    strength   REAL NOT NULL DEFAULT 1,
    updated_at REAL NOT NULL,
    PRIMARY KEY (a, b)
);

-- Computed routes ("mesh_routes"): path is the CBOR array of node ids, first hop first.
CREATE TABLE routes (
    destination      BLOB NOT NULL,
    rank             INTEGER NOT NULL,
    path             BLOB    NOT NULL,
    hop_count        INTEGER NOT NULL,
    total_latency_ms REAL    NOT NULL,
    reliability      REAL    NOT NULL,
    computed_at      REAL    NOT NULL,
    PRIMARY KEY (destination, rank)
);
