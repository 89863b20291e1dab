-- Every write of a user's row bumps its version, so that a cache can tell a
-- newer row from an older one whoever finishes first, and a notification can
-- say which version a reader must at least see.
alter table user_status add column version bigint not null default 1;

create function user_status_bump_version() returns trigger
language plpgsql
as $$
begin
    new.version := old.version + 1;
    return new;
end
$$;

create trigger user_status_bump_version
    before update on user_status
    for each row execute function user_status_bump_version();
