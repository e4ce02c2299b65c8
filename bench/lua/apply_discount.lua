-- POST /api/cart/<id>/apply_discount/ with the code given as tag: each request takes a
-- fresh, un-discounted cart of the thread's slice of the pool. Run with BENCH_OK_FILE set
-- so bench/run.py can check every cart answered 200 in the database.
local c = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
c.install()

function request()
   local path = c.prefix .. "/api/cart/" .. c.fresh_id() .. "/apply_discount/"
   return wrk.format("POST", path, c.json_headers, '{"code": "' .. c.tag .. '"}')
end
