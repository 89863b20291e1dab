-- PUT /api/status heartbeats from random tabs of random users: written by the
-- ping writer in group commits.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
request = function()
  return ping(false)
end
