-- GET /api/status/{id} for a random seeded user, each request from a random
-- one of the signed viewers (every front end polls with its own token).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
request = function()
  return wrk.format("GET", "/api/status/" .. random_id(), { ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] })
end
