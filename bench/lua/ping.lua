-- PUT /api/status heartbeats from random users who hold a token.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
request = function()
  return ping(false)
end
