-- wrk script: every request is a notification with one new, distinct alert (a notify-only policy, so the
-- responder does the whole intake path: auth, parse, validate, durable commit, decide, audit).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
local counter = 0
local thread_id = 0
function setup(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end
function request()
  counter = counter + 1
  local fp = string.format("%08x%08x", thread_id, counter)
  local body = '{"version":"4","groupKey":"{}:{alertname=\\"CanaryHighMemory\\"}","truncatedAlerts":0,' ..
    '"status":"firing","receiver":"canary\\\\.responder","groupLabels":{},"commonLabels":{},' ..
    '"commonAnnotations":{},"externalURL":"http://am-0:9093","alerts":[{"status":"firing",' ..
    '"labels":{"alertname":"CanaryHighMemory","namespace":"shop","app":"load-' .. (counter % 1000) ..
    '","action":"notify","severity":"warning"},"annotations":{"summary":"memory"},' ..
    '"startsAt":"2026-11-27T12:00:00.123456789Z","endsAt":"0001-01-01T00:00:00Z",' ..
    '"generatorURL":"http://prometheus:9090/graph","fingerprint":"' .. fp .. '"}]}'
  return wrk.format(nil, "/api/v1/alerts", nil, body)
end
