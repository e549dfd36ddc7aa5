-- An event's route target hits move into its own row (`targets`: a JSON array of
-- [route, target, detail], each (route, target) once), written with its routes while
-- the row is still held back: one row per routed event instead of two. The hits kept
-- in `event_targets` move over, then the table goes.
ALTER TABLE events ADD COLUMN targets;
UPDATE events SET targets = (
    SELECT json_group_array(json_array(t.route, t.target,
                                       json(coalesce(CAST(t.detail AS TEXT), '{}'))))
    FROM event_targets AS t WHERE t.seq = events.seq)
WHERE seq IN (SELECT seq FROM event_targets);
DROP TABLE event_targets;
