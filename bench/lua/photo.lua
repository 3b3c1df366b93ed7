-- POST a report with one photo as multipart/form-data: BENCH_PATH, BENCH_API_KEY, BENCH_PHOTO (a JPEG file).
dofile(os.getenv("BENCH_LUA_DIR") .. "/summary.lua")
dofile(os.getenv("BENCH_LUA_DIR") .. "/fresh_key.lua")

local boundary = "----intakebench7MA4YWxkTrZu0gW"
local file = assert(io.open(os.getenv("BENCH_PHOTO"), "rb"))
local photo = file:read("*a")
file:close()

local function field(name, value)
  return "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. name .. "\"\r\n\r\n" .. value .. "\r\n"
end

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.headers["X-API-Key"] = os.getenv("BENCH_API_KEY") or ""
wrk.body = field("description", "Ngập sâu trước nhà số 12 Lê Lợi, nước tràn vào nhà, xe chết máy hàng loạt") ..
           field("lat", "10.7731") .. field("lon", "106.7030") ..
           "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"photos\"; filename=\"flood.jpg\"\r\n" ..
           "Content-Type: image/jpeg\r\n\r\n" .. photo .. "\r\n--" .. boundary .. "--\r\n"

done = summary_done
