-- Shared by bench/run's wrk scripts: keeps the threads, and at the end prints wrk's figures as
-- one JSON line (`BENCH_JSON {...}`) for the bench to read, with the per-100-ms request counts
-- of scripts that keep them (`buckets`).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local buckets = thread:get("buckets")
    if type(buckets) == "table" then
      for slot, count in pairs(buckets) do
        merged[slot] = (merged[slot] or 0) + count
      end
    end
  end
  local parts = {}
  for slot, count in pairs(merged) do
    table.insert(parts, string.format('"%d":%d', slot, count))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"buckets":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ",")))
end
