-- GET /api/admin/online?at= at a random instant of the seeded history (a
-- service token), the first page of 1,000 ids.
local token = os.getenv("BENCH_TOKEN")
local days = tonumber(os.getenv("BENCH_DAYS"))
local y, mo, d = os.getenv("BENCH_END"):match("(%d+)-(%d+)-(%d+)")
local finish = os.time({ year = y, month = mo, day = d, hour = 0 }) - os.time({ year = 1970, month = 1, day = 1, hour = 0 })
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))

request = function()
  local at = finish - math.random(days * 86400)
  return wrk.format("GET", "/api/admin/online?at=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", at),
    { ["Authorization"] = "Bearer " .. token })
end
