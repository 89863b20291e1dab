-- Where webhook delivery stands (see src/webhooks/mod.rs): the number of the
-- last change acknowledged or dropped. Null until webhooks first run, which
-- then start at the end of the feed: an application that turns webhooks on
-- gets the changes from then on (the feed holds what came before).
-- (On Citus it stays on the coordinator, with the feed.)
create table webhook_deliveries (
    singleton boolean primary key default true check (singleton),
    delivered_through bigint,
    updated_at timestamptz not null default now()
);
insert into webhook_deliveries default values;
