-- bench/run: requests built per request, by the arguments after `--`:
--   random <path with %d> <lo> <hi>           GET with a random id in lo..hi
--   count  <path with %d> <lo> <hi>           the same, counting requests per 100 ms (buckets)
--   post   <path> <file of bearer tokens> <body>  POST as a random one of the tokens
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local now = ffi.new("bench_timespec")

local mode, template, lo, hi
local prepared = {}
buckets = {}

function init(args)
  mode, template = args[1], args[2]
  math.randomseed(os.time() * 100 + (thread_number or 0))
  if mode == "post" then
    for token in io.lines(args[3]) do
      local headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
      table.insert(prepared, wrk.format("POST", template, headers, args[4]))
    end
  else
    lo, hi = tonumber(args[3]), tonumber(args[4])
  end
end

function request()
  if mode == "post" then
    return prepared[math.random(#prepared)]
  end
  if mode == "count" then
    ffi.C.clock_gettime(0, now)
    local slot = tonumber(now.tv_sec) * 10 + math.floor(tonumber(now.tv_nsec) / 100000000)
    buckets[slot] = (buckets[slot] or 0) + 1
  end
  return wrk.format(nil, string.format(template, math.random(lo, hi)))
end
