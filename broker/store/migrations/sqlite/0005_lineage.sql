-- Lineage budget: which root event each derived event descends from, and how many
-- descendants each root has caused so far (bounded by the `max_descendants` setting,
-- with one loop notice per root).
ALTER TABLE events ADD COLUMN root INTEGER;

CREATE TABLE event_lineage (
    root        INTEGER PRIMARY KEY,
    descendants INTEGER NOT NULL,
    noticed     INTEGER NOT NULL
);
