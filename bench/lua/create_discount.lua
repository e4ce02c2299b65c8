-- POST /api/discount/: a new code per request, unique by run tag, thread and counter.
local c = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
c.install()

function request()
   local body = string.format(
      '{"code": "%s", "kind": "amount", "value": 5, "description": "benchmark"}',
      c.unique()
   )
   return wrk.format("POST", c.prefix .. "/api/discount/", c.json_headers, body)
end
