-- GET /api/cart/<id>/: cycles through the thread's slice of existing cart ids.
local c = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
c.install()

function request()
   return wrk.format("GET", c.prefix .. "/api/cart/" .. c.cycle_id() .. "/", c.get_headers)
end
