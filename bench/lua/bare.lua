-- GET /bench/bare/: a DRF APIView returning a constant (bench/urls.py), the baseline.
local c = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
c.install()

local req
function request()
   req = req or wrk.format("GET", "/bench/bare/", c.get_headers)
   return req
end
