-- POST a JSON report: BENCH_PATH (/v1/reports or /bare/reports), BENCH_API_KEY.
dofile(os.getenv("BENCH_LUA_DIR") .. "/summary.lua")
dofile(os.getenv("BENCH_LUA_DIR") .. "/fresh_key.lua")

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("BENCH_API_KEY") or ""
wrk.body = '{"description": "Đèn đường trước chợ Bến Thành bị tắt ba đêm nay, rất tối và nguy hiểm.", ' ..
           '"lat": 10.7725, "lon": 106.698, "channel": "app"}'

done = summary_done
