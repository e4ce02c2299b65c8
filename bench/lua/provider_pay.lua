-- POST /request_payment straight at the fake provider: the request our client
-- (utils.PaymentAPI) sends for one pay, byte for byte in shape: integer minor units,
-- currency, cart_id, pm_card_visa, and an Idempotency-Key unique per request shaped like
-- the service's "cart-<cart id>-<request key>". Cart ids cycle through the id file.
local c = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
c.install()

function request()
   local cart_id = c.cycle_id()
   local headers = {
      ["Content-Type"] = "application/json",
      ["Accept"] = "application/json",
      ["Idempotency-Key"] = "cart-" .. cart_id .. "-" .. c.unique(),
   }
   local body = string.format(
      '{"cart_id": "%s", "amount": 2000, "currency": "USD", "payment_method": "pm_card_visa"}',
      cart_id
   )
   return wrk.format("POST", "/request_payment", headers, body)
end
