-- user_status is an update-heavy table: every written ping rewrites one row.
--
-- fillfactor 70 leaves room on each page for the new version of a row, so an
-- update can stay on the same page as a HOT update (no new index entries, no
-- index bloat). HOT also needs the update to leave every indexed column alone:
-- the primary key never changes, device_count changes only when a device comes
-- or goes, and oldest_ping_minute at most once a minute per user. No index
-- covers last_seen, devices or updated_at, which nearly every ping moves.
--
-- Dead versions pile up at the ping rate, so autovacuum visits this table
-- sooner than the defaults (20% of the rows dead) would.
alter table user_status set (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.05
);
