-- The storm: BENCH_COUNT reports at BENCH_RATE per second in all (open loop: each request has its
-- due time; a free connection sends it then, or at once when late), spread over the demo wards.
-- Split between wrk's threads; past the count a connection just waits for -d to end.
dofile(os.getenv("BENCH_LUA_DIR") .. "/summary.lua")

local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local thread_count = tonumber(os.getenv("BENCH_THREADS") or "1")
local rate = tonumber(os.getenv("BENCH_RATE")) / thread_count
local count = math.floor(tonumber(os.getenv("BENCH_COUNT")) / thread_count)
local started, scheduled, made = nil, 0, 0
statuses = {}

-- ward boxes (min lon, min lat, max lon, max lat) from service/catalogue/demo_jurisdictions.geojson
local wards = {
  {106.6935, 10.769, 106.709, 10.7865}, {106.688, 10.768, 106.7005, 10.7796}, {106.6885, 10.7625, 106.6975, 10.7695},
  {106.6835, 10.7755, 106.6995, 10.7905}, {106.664, 10.768, 106.6755, 10.779}, {106.659, 10.799, 106.67, 10.816},
  {106.6795, 10.822, 106.6905, 10.833}, {106.7095, 10.798, 106.7205, 10.809}, {106.725, 10.799, 106.755, 10.814},
  {106.725, 10.787, 106.756, 10.806},
}
local texts = {
  "Nước ngập sâu tới đầu gối trên đường, xe máy chết máy hàng loạt, cống thoát nước bị nghẹt",
  "Cây xanh bị gió quật ngã chắn ngang đường, nguy hiểm cho người đi đường",
  "Đèn đường bị tắt cả đoạn sau cơn mưa, rất tối và nguy hiểm",
  "Rác thải dồn ứ sau mưa lớn bốc mùi hôi thối, chưa ai thu gom",
  "Nắp cống bị nước đẩy bật lên giữa đường, rất nguy hiểm cho xe máy",
  "Đường bị sụt lún tạo ổ gà lớn sau trận mưa, nhiều người té ngã",
  "Dây điện bị đứt rơi xuống mặt đường ngập nước, rất nguy hiểm",
  "Nước từ kênh tràn vào hẻm, nhà dân bị ngập, cần hỗ trợ bơm nước",
}

function init(args)
  math.randomseed((id or 1) * 7919)
end

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function delay()
  local now = now_ms()
  if started == nil then started = now end
  if scheduled >= count then return 3600 * 1000 end
  local due = started + scheduled * 1000 / rate
  scheduled = scheduled + 1
  if due > now then return math.floor(due - now) end
  return 0
end

function request()
  made = made + 1
  local ward = wards[math.random(#wards)]
  local lat = ward[2] + math.random() * (ward[4] - ward[2])
  local lon = ward[1] + math.random() * (ward[3] - ward[1])
  local body = string.format('{"description": "%s (điểm %d-%d)", "lat": %.6f, "lon": %.6f, "channel": "app"}',
                             texts[math.random(#texts)], id or 0, made, lat, lon)
  return wrk.format("POST", "/v1/reports",
                    {["Content-Type"] = "application/json", ["X-API-Key"] = os.getenv("BENCH_API_KEY")}, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = summary_done
