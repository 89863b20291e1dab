-- GET /api/status?ids= with 100 random seeded users.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
request = function()
  return wrk.format("GET", "/api/status?ids=" .. random_ids(100), { ["Authorization"] = viewer_auth() })
end
