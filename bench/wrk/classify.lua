-- wrk script for bench/run.sh: POST /classify with request bodies rotated from a file.
-- BODIES = path of a file with one JSON body per line (written by bench/bench.py from real
-- THUCNews test headlines). Requests are formatted once per thread in init(), so the per-request
-- Lua cost is an index increment. done() prints one JSON line (prefixed "WRK_JSON ") with the
-- counts and latency percentiles in microseconds, which bench.py parses.

local requests = {}
local n = 0
local i = 0

function init(args)
  local path = os.getenv("BODIES")
  assert(path, "set BODIES to a file of JSON bodies, one per line")
  local headers = { ["content-type"] = "application/json" }
  for line in io.lines(path) do
    if #line > 0 then
      n = n + 1
      requests[n] = wrk.format("POST", "/classify", headers, line)
    end
  end
  assert(n > 0, "no bodies in " .. path)
  -- Start each thread at a different place in the rotation.
  i = (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % n
end

function request()
  i = i % n + 1
  return requests[i]
end

function done(summary, latency, requests_)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"mean":%.1f,"max":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
