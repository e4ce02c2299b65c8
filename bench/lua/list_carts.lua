-- GET /api/cart/: the first page (default size, newest first) of the whole cart table.
local c = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
c.install()

local req
function request()
   req = req or wrk.format("GET", c.prefix .. "/api/cart/", c.get_headers)
   return req
end
