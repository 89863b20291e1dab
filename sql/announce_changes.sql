-- Announces written rows on the `presence_changes` channel: each change is
-- "u:<user>:<version>", sent comma-separated, 150 a notification (a payload
-- holds at most 8000 bytes), delivered at commit.
--
-- The writers call it as a statement of its own, touching no table, after
-- the statement that wrote the rows: on a distributed database (Citus) a
-- statement on a user's rows runs on the worker holding them, where a
-- notification would reach no server; this one runs where the servers listen.
create or replace function announce_changes(p_changes text[]) returns void
language plpgsql
as $function$
begin
    perform pg_notify('presence_changes', string_agg(c.change, ',' order by c.position))
    from unnest(p_changes) with ordinality as c(change, position)
    group by (c.position - 1) / 150;
end
$function$;
