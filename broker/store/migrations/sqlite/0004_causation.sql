-- Causation as a column, so "what did this event cause" is an index lookup.
ALTER TABLE events ADD COLUMN causationid TEXT;
CREATE INDEX events_causation ON events (causationid) WHERE causationid IS NOT NULL;
