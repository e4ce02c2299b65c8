-- POST /api/cart/: a new 20.00 USD cart per request.
local c = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
c.install()

local req
function request()
   req = req
      or wrk.format(
         "POST",
         c.prefix .. "/api/cart/",
         c.json_headers,
         '{"total": 20.00, "currency": "USD", "items_number": 3}'
      )
   return req
end
