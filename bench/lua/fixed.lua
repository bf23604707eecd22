-- bench/run: one fixed request (wrk's own fast path: no Lua per request).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
