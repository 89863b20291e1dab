-- One ping as apply_pings takes it (see sql/apply_pings.sql): the one place
-- the columns of a ping are defined in SQL. The ping writer passes a batch as
-- one array of these (the Rust side is `PingInput` in src/store/status.rs),
-- where it passed fourteen arrays, one per column, each listed again in every
-- function that took them.
create type ping_input as (
    user_id uuid,
    device_id text,
    -- null: keep the device's platform (web for a new device).
    platform text,
    -- false for a heartbeat: the device is live, the user's activity unchanged.
    active boolean,
    at timestamptz,
    -- Whether the ping sets the manual status (to manual_status, null clearing it) until manual_until.
    set_manual boolean,
    manual_status text,
    manual_until timestamptz,
    -- Whether it keeps the manual status but drops its expiry.
    drop_manual_expiry boolean,
    -- null: invisible unchanged.
    invisible boolean,
    -- As for the manual status, for the status message.
    set_message boolean,
    message text,
    message_until timestamptz,
    drop_message_expiry boolean
);

-- The functions that took the fourteen arrays (sql/ installs their successors).
drop function if exists apply_pings(
    uuid[], text[], text[], boolean[], timestamptz[], integer, boolean[], text[],
    timestamptz[], boolean[], boolean[], boolean[], text[], timestamptz[], boolean[]);
drop function if exists ping_rows(
    uuid[], text[], text[], boolean[], timestamptz[], boolean[], text[],
    timestamptz[], boolean[], boolean[], boolean[], text[], timestamptz[], boolean[]);
