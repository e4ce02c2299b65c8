-- Shared by every scenario script (loaded with dofile by each of them).
--
-- Command line, after wrk's own options:  -- <threads> <id file or -> <tag> [<prefix or ->]
--   threads  the same number as wrk -t, so each thread can take its own slice of ids
--   id file  one id per line (cart UUIDs); thread k takes lines k, k+T, k+2T, ...
--   tag      a per-run string: a discount code, or a prefix making codes and keys unique
--   prefix   put before every path: /bench/limit for the limit rows (bench/limits.py)
-- Environment: BENCH_OK_FILE, if set, receives the ids (first "id" of the JSON body) of
-- every 200 answer, one per line, so bench/run.py can check them in the database.
--
-- done() prints one line: BENCH_RESULT {json} with requests, rps, latency percentiles
-- (microseconds), non-2xx answers, socket errors, answers by status, and "exhausted":
-- how many requests found their thread's slice of a single-use pool used up.

local M = {}

M.json_headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
M.get_headers = { ["Accept"] = "application/json" }

local threads = {}

-- Main environment: number the threads and keep them for done().
function M.setup(thread)
   thread:set("thread_id", #threads)
   table.insert(threads, thread)
end

-- Thread environment.
non2xx = 0
exhausted = 0
statuses = {}
ok_ids = {}

function M.init(args)
   M.nthreads = tonumber(args[1]) or 1
   M.tag = args[3] or "run"
   M.prefix = (args[4] and args[4] ~= "-") and args[4] or ""
   M.ids = {}
   M.next_index = 0
   M.counter = 0
   M.collect_ok = os.getenv("BENCH_OK_FILE") ~= nil
   local file = args[2]
   if file and file ~= "-" then
      local index = 0
      for line in io.lines(file) do
         if line ~= "" then
            if index % M.nthreads == thread_id then
               M.ids[#M.ids + 1] = line
            end
            index = index + 1
         end
      end
      if #M.ids == 0 then
         error("thread " .. thread_id .. " got no ids from " .. file)
      end
   end
end

-- The next id of this thread's slice, cycling (for reads).
function M.cycle_id()
   M.next_index = M.next_index % #M.ids + 1
   return M.ids[M.next_index]
end

-- The next unused id of this thread's slice (for single-use pools). Past the end it
-- starts again and counts "exhausted": bench/run.py then rejects the measurement.
function M.fresh_id()
   M.next_index = M.next_index + 1
   if M.next_index > #M.ids then
      exhausted = exhausted + 1
      M.next_index = 1
   end
   return M.ids[M.next_index]
end

-- A string unique per request of this run: tag, thread, counter.
function M.unique()
   M.counter = M.counter + 1
   return M.tag .. "-" .. thread_id .. "-" .. M.counter
end

function M.response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   elseif M.collect_ok and status == 200 then
      local id = body:match('"id":"([%x%-]+)"')
      if id then
         ok_ids[#ok_ids + 1] = id
      end
   end
end

function M.done(summary, latency, requests)
   local total_non2xx, total_exhausted = 0, 0
   local by_status = {}
   local ok_file = os.getenv("BENCH_OK_FILE")
   local out = ok_file and assert(io.open(ok_file, "w"))
   for _, thread in ipairs(threads) do
      total_non2xx = total_non2xx + (thread:get("non2xx") or 0)
      total_exhausted = total_exhausted + (thread:get("exhausted") or 0)
      for status, count in pairs(thread:get("statuses") or {}) do
         by_status[status] = (by_status[status] or 0) + count
      end
      if out then
         for _, id in ipairs(thread:get("ok_ids") or {}) do
            out:write(id, "\n")
         end
      end
   end
   if out then
      out:close()
   end
   local parts = {}
   for status, count in pairs(by_status) do
      parts[#parts + 1] = string.format('"%d":%d', status, count)
   end
   local e = summary.errors
   local socket_errors = e.connect + e.read + e.write + e.timeout
   local seconds = summary.duration / 1e6
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_s":%.3f,"rps":%.2f,'
         .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,'
         .. '"non2xx":%d,"socket_errors":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,'
         .. '"errors":%d,"exhausted":%d,"statuses":{%s}}\n',
      summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean,
      total_non2xx, socket_errors, e.connect, e.read, e.write, e.timeout,
      total_non2xx + socket_errors, total_exhausted, table.concat(parts, ",")))
end

-- Install the hooks every scenario shares; the scenario defines request().
function M.install()
   setup = M.setup
   init = M.init
   response = M.response
   done = M.done
end

return M
