-- Argo CD health check for the oneiric.dev kinds (Candidate, Component, StackPolicy, RemoteManifest).
-- It reads the kstatus conditions the operator writes (docs/health.md), in kstatus' order:
--   spec.paused / spec.suspend            -> Suspended
--   no status, or status.observedGeneration behind metadata.generation -> Progressing
--   Stalled=True                          -> Degraded    (Hold, a slot conflict, a rejected signature)
--   Degraded=True                         -> Degraded    (the last swap was rolled back)
--   Reconciling=True                      -> Progressing (a swap or a health gate is running)
--   Ready=True                            -> Healthy
--   anything else (Ready False/Unknown/absent) -> Progressing
local hs = {}

local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason or fallback
end

if obj.spec ~= nil and (obj.spec.paused == true or obj.spec.suspend == true) then
  hs.status = "Suspended"
  if obj.spec.paused == true then
    hs.message = "spec.paused is true: the operator makes no swap"
  else
    hs.message = "spec.suspend is true: the operator does not fetch"
  end
  return hs
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

-- Not a kstatus condition, but Argo CD has the notion: the last swap failed its gate and was rolled
-- back (the previous binding still serves), or a swap was forced through unhealthy.
local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "Degraded")
  return hs
end

local reconciling = condition(status, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Ready condition")
return hs
