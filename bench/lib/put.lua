-- wrk script for bench/fleet.sh: PUTs of new NameServices, each name once.
-- Names: app<base + n>.gslb.example, base from the environment (one range per
-- wrk process), n counting the requests of this (single-threaded) wrk.
local base = tonumber(os.getenv("PUT_BASE") or "0")
local n = 0
local headers = { ["Content-Type"] = "application/json" }

request = function()
    local k = base + n
    n = n + 1
    local name = "app" .. k .. ".gslb.example"
    local body = '{"name":"' .. name .. '","ttl":30,"policy":"RoundRobin",'
        .. '"targets":[{"name":"dc1","address":"192.0.2.' .. (10 + k % 200) .. '"}]}'
    return wrk.format("PUT", "/api/v1/nameservices/" .. name, headers, body)
end
