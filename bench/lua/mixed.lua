-- Simulated front ends: each polls its 20 contacts every 3 s with the ETag of
-- its last answer, heartbeats every 30 s and sends an activity ping every
-- 2 minutes. The request mix follows those rates; the contact lists and the
-- ETags they had before the run come from bench/run.sh (wrk cannot tell which
-- request an answer belongs to, so a list keeps its starting ETag: heartbeats
-- in the run make some of them stale, as they would in real polling).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local poll, heartbeat, activity = 1 / 3, 1 / 30, 1 / 120
local total = poll + heartbeat + activity
request = function()
  local draw = math.random() * total
  if draw < poll then
    local n = math.random(#contact_lists)
    return wrk.format("GET", "/api/status?ids=" .. contact_lists[n], {
      ["Authorization"] = viewer_auth(),
      ["If-None-Match"] = contact_etags[n],
    })
  elseif draw < poll + heartbeat then
    return ping(false)
  else
    return ping(true)
  end
end
