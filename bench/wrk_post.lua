-- wrk script for bench/bench_serving.py: POST multipart WAV clips to /classify, round robin.
--
--   BENCH_BODY_DIR=<dir with body_0.bin ...> BENCH_BODY_COUNT=50 BENCH_BOUNDARY=<boundary> \
--       wrk -t2 -c32 -d10s --latency -s bench/wrk_post.lua http://127.0.0.1:8000/classify
--
-- Every request body is built in Python (one multipart part `audio` holding a 16-bit WAV) and
-- pre-formatted here once per thread. `done` prints one line "BENCH_RESULT {json}" with the
-- request count, duration, latency percentiles (ms), socket and status errors, the status
-- counts and the mean server-side latency_ms read from the responses (to split the time
-- spent in the handler from the time spent in the framework), and the responses per API worker (the
-- service's x-scopeml-worker header: how the load spread over the workers).

local dir = os.getenv("BENCH_BODY_DIR")
local count = tonumber(os.getenv("BENCH_BODY_COUNT") or "1")
local boundary = os.getenv("BENCH_BOUNDARY")
local path = os.getenv("BENCH_PATH") or "/classify"

local threads = {}
local requests = {}
local next_index = 1

-- per-thread tallies (read back in done() through thread:get)
handler_ms_sum = 0
handler_n = 0
status_2xx = 0
status_429 = 0
status_503 = 0
status_other = 0
worker_counts = {}  -- responses per value of the service's x-scopeml-worker header (which API worker answered)

function setup(thread)
   thread:set("thread_id", #threads)
   table.insert(threads, thread)
end

function init(args)
   local headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary }
   for i = 0, count - 1 do
      local f = assert(io.open(dir .. "/body_" .. i .. ".bin", "rb"))
      local body = f:read("*a")
      f:close()
      requests[i + 1] = wrk.format("POST", path, headers, body)
   end
   -- threads start at different clips so they do not send the same clip in lock step
   next_index = ((thread_id or 0) * 7) % count + 1
end

function request()
   local r = requests[next_index]
   next_index = next_index % count + 1
   return r
end

function response(status, headers, body)
   local w = headers["x-scopeml-worker"]
   if w then
      worker_counts[w] = (worker_counts[w] or 0) + 1
   end
   if status >= 200 and status < 300 then
      status_2xx = status_2xx + 1
      local ms = body and string.match(body, '"latency_ms"%s*:%s*([%d%.eE%-]+)')
      if ms then
         handler_ms_sum = handler_ms_sum + tonumber(ms)
         handler_n = handler_n + 1
      end
   elseif status == 429 then
      status_429 = status_429 + 1
   elseif status == 503 then
      status_503 = status_503 + 1
   else
      status_other = status_other + 1
   end
end

function done(summary, latency, requests_)
   local ms_sum, n, ok, s429, s503, other = 0, 0, 0, 0, 0, 0
   local workers = {}
   for _, t in ipairs(threads) do
      for w, c in pairs(t:get("worker_counts") or {}) do
         workers[w] = (workers[w] or 0) + c
      end
      ms_sum = ms_sum + (t:get("handler_ms_sum") or 0)
      n = n + (t:get("handler_n") or 0)
      ok = ok + (t:get("status_2xx") or 0)
      s429 = s429 + (t:get("status_429") or 0)
      s503 = s503 + (t:get("status_503") or 0)
      other = other + (t:get("status_other") or 0)
   end
   local parts = {}
   for w, c in pairs(workers) do
      table.insert(parts, string.format('"%s": %d', w, c))
   end
   table.sort(parts)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"p50_ms": %.3f, "p75_ms": %.3f, "p90_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "mean_ms": %.3f, ' ..
      '"err_connect": %d, "err_read": %d, "err_write": %d, "err_status": %d, "err_timeout": %d, ' ..
      '"status_2xx": %d, "status_429": %d, "status_503": %d, "status_other": %d, ' ..
      '"handler_ms_mean": %.3f, "handler_n": %d, "per_worker": {%s}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50) / 1000, latency:percentile(75) / 1000, latency:percentile(90) / 1000,
      latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
      e.connect, e.read, e.write, e.status, e.timeout,
      ok, s429, s503, other, n > 0 and ms_sum / n or -1, n, table.concat(parts, ", ")))
end
