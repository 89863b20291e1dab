-- GET /api/admin/stats?bucket=day over the whole seeded history (a service token).
local token = os.getenv("BENCH_TOKEN")
local days = tonumber(os.getenv("BENCH_DAYS"))
local y, mo, d = os.getenv("BENCH_END"):match("(%d+)-(%d+)-(%d+)")
local finish = os.time({ year = y, month = mo, day = d, hour = 0 }) - os.time({ year = 1970, month = 1, day = 1, hour = 0 })
local path = "/api/admin/stats?bucket=day&from=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", finish - days * 86400)
  .. "&to=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", finish)

request = function()
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
end
