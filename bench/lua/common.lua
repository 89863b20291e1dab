-- Shared by the scenarios: loads the seeded ids and tokens that bench/run.sh wrote.
dofile(os.getenv("BENCH_DATA"))
local hot = tonumber(os.getenv("BENCH_HOT") or "0")
local pool = (hot > 0 and hot < #ids) and hot or #ids

function random_id()
  return ids[math.random(pool)]
end

function random_ids(count)
  local picked = {}
  for i = 1, count do
    picked[i] = random_id()
  end
  return table.concat(picked, ",")
end

function viewer_auth()
  return "Bearer " .. tokens[1]
end

-- A ping from one of three tabs of a random user: many distinct devices, as
-- real clients are, never one device in a loop. `extra` adds body fields.
function ping(active, extra)
  local n = math.random(#tokens)
  local body = string.format('{"deviceId":"tab-%d","active":%s%s}',
    math.random(3), active and "true" or "false", extra or "")
  return wrk.format("PUT", "/api/status", {
    ["Authorization"] = "Bearer " .. tokens[n],
    ["Content-Type"] = "application/json",
  }, body)
end

math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
