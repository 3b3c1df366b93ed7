-- A fresh Idempotency-Key on every request, as a real app sends it, when BENCH_IDEMPOTENCY_RUN is set
-- (a prefix unique to this wrk run, so a warm-up's keys are never replayed); loaded by json.lua and photo.lua.
local run = os.getenv("BENCH_IDEMPOTENCY_RUN")
if run and run ~= "" then
  local shared_setup = setup
  function setup(thread)
    shared_setup(thread)
    thread:set("thread_number", #threads)
  end

  local sent = 0
  function request()
    sent = sent + 1
    wrk.headers["Idempotency-Key"] = run .. "-" .. tostring(thread_number or 0) .. "-" .. sent
    return wrk.format()
  end
end
