-- Shared by the bench scripts: done() prints one JSON line the Python side parses (wrk's own text is kept too).
threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function summary_done(summary, latency, requests)
  local statuses = {}
  for _, thread in ipairs(threads) do
    local counted = thread:get("statuses")
    if counted then
      for code, n in pairs(counted) do
        statuses[tostring(code)] = (statuses[tostring(code)] or 0) + n
      end
    end
  end
  local parts = {}
  for code, n in pairs(statuses) do
    table.insert(parts, string.format('"%s": %d', code, n))
  end
  -- The latency at the middle of each thousandth of the requests: runs are merged from these (stack.merge).
  local quantiles = {}
  for i = 0, 999 do
    table.insert(quantiles, tostring(latency:percentile((i + 0.5) / 10)))
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, "statuses": {%s}, "quantiles_us": [%s]}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ", "), table.concat(quantiles, ",")))
end
