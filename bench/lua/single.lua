-- GET /api/status/{id} for a random seeded user.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
request = function()
  return wrk.format("GET", "/api/status/" .. random_id(), { ["Authorization"] = viewer_auth() })
end
