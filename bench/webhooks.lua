-- wrk script: POST /api/webhooks/shippo, each request a different Shippo track_updated (a new
-- event, so each one is kept and queued), signed as Shippo signs it, and a tally of the
-- answers. Arguments after `--`: a file of "<Shippo-Auth-Signature> <body>" lines, the URL's
-- path with its token, and wrk's thread count. Thread k takes the lines k, k+T, k+2T...;
-- requests are built once in init(). Past the last line it wraps around: a body sent again
-- is answered "duplicate" (counted), never silently.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local path, target, count = args[1], args[2], tonumber(args[3])
  requests = {}
  local i = 0
  for line in io.lines(path) do
    if i % count == id then
      local signature, body = line:match("(%S+) (.*)")
      table.insert(requests, wrk.format("POST", target, {
        ["Content-Type"] = "application/json",
        ["Shippo-Auth-Signature"] = signature,
      }, body))
    end
    i = i + 1
  end
  sent = 0
  accepted, duplicate, kept, client_error, server_error, other = 0, 0, 0, 0, 0, 0
end

function request()
  sent = sent + 1
  return requests[(sent - 1) % #requests + 1]
end

function response(status, headers, body)
  if status == 200 then
    if body:find('"accepted"', 1, true) then
      accepted = accepted + 1
    elseif body:find('"duplicate"', 1, true) then
      duplicate = duplicate + 1
    else
      kept = kept + 1
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
  local totals = { accepted = 0, duplicate = 0, kept = 0, client_error = 0, server_error = 0,
                   other = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
  end
  io.write(string.format(
    "STATUS accepted=%d duplicate=%d kept=%d client_error=%d server_error=%d other=%d\n",
    totals.accepted, totals.duplicate, totals.kept, totals.client_error, totals.server_error,
    totals.other))
end
