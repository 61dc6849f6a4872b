-- wrk script for scripts/overload.sh: like classify.lua (POST /classify with bodies rotated from
-- $BODIES), and it counts responses by status class in every thread; done() prints one line
-- "WRK_STATUS {...}" with the totals (2xx, 429, other 4xx, 5xx) and the latency percentiles (µs).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

-- init() and request(): the same bodies and rotation as the benchmark's script (wrk runs from
-- the repository root, as scripts/overload.sh does).
dofile("bench/wrk/classify.lua")

ok, too_many, other4xx, server_err = 0, 0, 0, 0

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  elseif status == 429 then
    too_many = too_many + 1
  elseif status >= 500 then
    server_err = server_err + 1
  else
    other4xx = other4xx + 1
  end
end

function done(summary, latency, requests_)
  local t = { ok = 0, too_many = 0, other4xx = 0, server_err = 0 }
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do
      t[k] = t[k] + (thread:get(k) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_STATUS {"requests":%d,"duration_us":%d,"2xx":%d,"429":%d,"other_4xx":%d,"5xx":%d,' ..
    '"socket_errors":%d,"latency_us":{"p50":%.1f,"p99":%.1f,"max":%.1f}}\n',
    summary.requests, summary.duration, t.ok, t.too_many, t.other4xx, t.server_err,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
