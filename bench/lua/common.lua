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

function ping(active)
  local n = math.random(#tokens)
  return wrk.format("PUT", "/api/status", {
    ["Authorization"] = "Bearer " .. tokens[n],
    ["Content-Type"] = "application/json",
  }, active and '{"deviceId":"bench"}' or '{"deviceId":"bench","active":false}')
end

math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
