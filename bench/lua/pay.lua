-- POST /api/cart/<id>/pay/ with pm_card_visa (always succeeds at the fake provider) and
-- an Idempotency-Key unique per request: each request pays a fresh, unpaid cart.
local c = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
c.install()

local body = '{"payment_method": "pm_card_visa"}'

function request()
   local headers = {
      ["Content-Type"] = "application/json",
      ["Accept"] = "application/json",
      ["Idempotency-Key"] = c.unique(),
   }
   return wrk.format("POST", c.prefix .. "/api/cart/" .. c.fresh_id() .. "/pay/", headers, body)
end
