-- Signs one device of a user out at p_at (the instant history records as the
-- end of its session) and announces the row (see announce_changes.sql), in
-- one call: one round trip, one transaction. Returns the row as it left it;
-- nothing, and nothing written or announced, when the user has no such
-- device.
--
-- The update names the user's key, so on Citus it runs on the user's worker,
-- and the announcement, a statement of its own, on the coordinator.
create or replace function remove_device(p_user uuid, p_device text, p_at timestamptz)
returns setof user_status
language plpgsql
as $function$
declare
    removed user_status;
begin
    update user_status as s
    set devices = (
            select coalesce(jsonb_agg(e.device order by e.position), '[]'::jsonb)
            from jsonb_array_elements(s.devices) with ordinality as e(device, position)
            where e.device ->> 'id' <> p_device),
        updated_at = p_at
    where s.user_id = p_user
      and s.devices @> jsonb_build_array(jsonb_build_object('id', p_device))
    returning s.* into removed;
    if found then
        perform announce_changes(array['u:' || removed.user_id || ':' || removed.version]);
        return next removed;
    end if;
end
$function$;
