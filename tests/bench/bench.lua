-- wrk script driven by a request plan that the harness writes (tests/bench/load.py):
--   wrk ... -s tests/bench/bench.lua <url> -- <plan.lua>
-- The plan returns { threads = T, headers = {...}, partition = bool, stop_after = N|nil,
--   done_dir = "..."|nil, requests = { { method = "GET", path = "/x" [, prefix = "...", suffix = "..."] }, ... } }
--   or, when no request has a body, lines = "GET /x\nGET /y\n..." instead of requests.
-- A request with prefix/suffix gets a unique body: prefix .. "<thread>-<n>" .. suffix, so that
-- every write really changes something. Every response that is not 2xx is counted (wrk itself
-- counts only >= 400), and so is every status, for the summary line printed by done().
-- With stop_after, each thread stops after its share and leaves a file in done_dir.

local plan
local mine = {}      -- this thread's requests, pre-formatted when they have a fixed body
local position = 0
local sequence = 0
local responses = 0
local limit = nil
local threads = {}

statuses = {}        -- global: read from each thread by done()

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

local function headers_for(request)
  -- wrk.format adds Content-Length to the table it is given: never share one between requests.
  local headers = {}
  for name, value in pairs(plan.headers) do headers[name] = value end
  if request.prefix ~= nil then headers["Content-Type"] = "application/json" end
  return headers
end

function init(args)
  plan = dofile(args[1])
  local id = thread_id or 0
  if plan.lines ~= nil then  -- requests without bodies, as "METHOD PATH" lines
    plan.requests = {}
    for method, path in string.gmatch(plan.lines, "(%S+) (%S+)\n") do
      table.insert(plan.requests, { method = method, path = path })
    end
  end
  for i, request in ipairs(plan.requests) do
    if not plan.partition or (i - 1) % plan.threads == id then
      local entry = { request = request }
      if request.prefix == nil then
        entry.raw = wrk.format(request.method, request.path, headers_for(request), nil)
      end
      table.insert(mine, entry)
    end
  end
  if #mine == 0 then error("no request for thread " .. id) end
  -- Threads start at different places so they do not walk the list in lockstep.
  position = (id * math.floor(#mine / plan.threads)) % #mine
  if plan.stop_after ~= nil then limit = math.ceil(plan.stop_after / plan.threads) end
end

function request()
  position = position % #mine + 1
  local entry = mine[position]
  if entry.raw ~= nil then return entry.raw end
  sequence = sequence + 1
  local r = entry.request
  local body = r.prefix .. (thread_id or 0) .. "-" .. sequence .. r.suffix
  return wrk.format(r.method, r.path, headers_for(r), body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  responses = responses + 1
  if limit ~= nil and responses == limit then
    -- wrk runs for its whole -d even when every thread stopped: tell the harness, which
    -- then interrupts wrk (SIGINT makes it print its figures at once).
    local marker = io.open(plan.done_dir .. "/" .. (thread_id or 0), "w")
    marker:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for status, count in pairs(counts) do merged[status] = (merged[status] or 0) + count end
  end
  local parts = {}
  for status, count in pairs(merged) do table.insert(parts, status .. ":" .. count) end
  io.write("BENCH-STATUSES " .. table.concat(parts, ",") .. "\n")
end
