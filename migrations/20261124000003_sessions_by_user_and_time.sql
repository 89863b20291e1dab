-- GET /api/admin/online?at= pages through users in id order. At a busy
-- instant most users are live: walking the users in id order and asking each
-- whether one of its sessions contains the instant fills a page after about a
-- page of users, where collecting every live session and sorting them costs
-- in proportion to everyone online. This index answers that question for one
-- user in one descent (btree_gist gives GiST the uuid equality).
create extension if not exists btree_gist;

create index device_sessions_user_during on device_sessions
    using gist (user_id, tstzrange(started_at, ended_at, '[)'));
