-- wrk script: POST /api/orders/create, each request with its own quote (so each one really
-- creates an order) and an Idempotency-Key, and a tally of the answers so non-201s show.
-- Arguments after `--`: a file of "token quote_id address_id" lines, and wrk's thread count.
-- Thread k takes the lines k, k+T, k+2T...; requests are built once in init(), so the Lua
-- cost per request is a table lookup. Past the last line it wraps around: the reused quote
-- is then answered from the idempotency record (counted as "replayed"), never silently.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local path, count = args[1], tonumber(args[2])
  requests = {}
  local i = 0
  for line in io.lines(path) do
    if i % count == id then
      local token, quote, address = line:match("(%S+) (%S+) (%S+)")
      local body = '{"quote_id":"' .. quote .. '","shipping_address_id":"' .. address .. '"}'
      table.insert(requests, wrk.format("POST", "/api/orders/create", {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = "application/json",
        ["Idempotency-Key"] = quote,
      }, body))
    end
    i = i + 1
  end
  sent = 0
  created, replayed, client_error, server_error, other = 0, 0, 0, 0, 0
end

function request()
  sent = sent + 1
  return requests[(sent - 1) % #requests + 1]
end

function response(status, headers, body)
  if status == 201 then
    if headers["idempotent-replayed"] or headers["Idempotent-Replayed"] then
      replayed = replayed + 1
    else
      created = created + 1
    end
  elseif status >= 400 and status < 500 then
    client_error = client_error + 1
  elseif status >= 500 then
    server_error = server_error + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local totals = { created = 0, replayed = 0, client_error = 0, server_error = 0, other = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
  end
  io.write(string.format("STATUS created=%d replayed=%d client_error=%d server_error=%d other=%d\n",
    totals.created, totals.replayed, totals.client_error, totals.server_error, totals.other))
end
