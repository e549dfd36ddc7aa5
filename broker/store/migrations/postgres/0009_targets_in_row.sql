-- An event's route target hits move into its own row (`targets`: a JSON array of
-- [route, target, detail], each (route, target) once), written with its routes: one
-- row per routed event instead of two. The hits kept in `event_targets` move over,
-- then the table goes.
ALTER TABLE events ADD COLUMN targets jsonb;
UPDATE events AS e SET targets = t.targets
FROM (SELECT seq, jsonb_agg(jsonb_build_array(route, target, coalesce(detail, '{}'::jsonb))
                            ORDER BY route, target) AS targets
      FROM event_targets GROUP BY seq) AS t
WHERE e.seq = t.seq;
DROP TABLE event_targets;
