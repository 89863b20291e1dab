-- PUT /api/status heartbeats that also set a setting (invisible: false), so
-- each is written on its own, at once, behind no batch: write-through.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
request = function()
  return ping(false, ',"invisible":false')
end
