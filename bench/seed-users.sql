-- The users run.sh and replicas.sh read: :users of them, each with one live
-- web device, a fifth with a status message. psql -v users=N -f bench/seed-users.sql
insert into user_status (user_id, last_seen, status_message, devices)
select gen_random_uuid(), now(), case when n % 5 = 0 then 'In a meeting' end,
       jsonb_build_array(jsonb_build_object(
           'id', 'web', 'platform', 'web', 'lastPing', now(), 'lastActive', now()))
from generate_series(1, :users) as n;
vacuum analyze user_status;
