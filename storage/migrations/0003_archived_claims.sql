-- 0003: a claim moved to the archive (its author forked) no longer names the send it claimed.
-- Versions before this one left such sends pointing at the archived claim; the replay, and so
-- the balances and send states, always treated them as unclaimed.

UPDATE sends SET claim_id = NULL
WHERE claim_id IS NOT NULL AND claim_id NOT IN (SELECT id FROM events);
