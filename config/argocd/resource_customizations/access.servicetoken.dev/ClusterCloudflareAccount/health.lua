-- Argo CD health of a servicetoken-operator object (ServiceToken,
-- CloudflareAccount or ClusterCloudflareAccount), read from the kstatus
-- conditions the operator writes: Ready, Reconciling and Stalled.
--
-- The same script serves all three kinds (hack/argocd/argocd_test.go checks
-- the copies are identical). It runs in Argo CD's Lua VM without the standard
-- libraries, as scripts from argocd-cm do: base functions and table only, no
-- string library.

-- Reasons that mean the operator stopped retrying until a person changes the
-- spec, the credentials or a conflicting Secret (api/v1alpha1/conditions.go).
-- Read only when the object has no Stalled condition (written by an operator
-- older than Stalled): the operator's Stalled condition is the verdict
-- otherwise. A missing credentials Secret is not here: it may yet be created
-- (Reconciling).
local terminal = {
  SecretConflict = true,
  Unauthorized = true,
  InvalidSpec = true,
  CredentialsInvalid = true,
  AccountNotAllowed = true,
  CredentialsNotOptedIn = true,
  APIURLNotAllowed = true,
  AccountChanged = true,
}

local function find(conditions, conditionType)
  for _, c in ipairs(conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

-- "Reason: message", or whichever of the two is set.
local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason == "" then
    return message
  end
  if message == "" then
    return reason
  end
  return reason .. ": " .. message
end

local function result(status, message)
  return { status = status, message = message }
end

local kind = obj.kind or "object"
local status = obj.status or {}
local conditions = status.conditions or {}
if #conditions == 0 then
  return result("Progressing", "Waiting for the operator to reconcile this " .. kind)
end

local ready = find(conditions, "Ready")
local reconciling = find(conditions, "Reconciling")
local stalled = find(conditions, "Stalled")

-- Conditions about an older spec say nothing about the current one.
local generation = obj.metadata.generation or 0
local observed = status.observedGeneration or 0
if observed < generation then
  if isTrue(reconciling) then
    return result("Progressing", describe(reconciling))
  end
  return result("Progressing", "Waiting for the operator to act on generation " .. generation ..
    " (status describes generation " .. observed .. ")")
end

if isTrue(stalled) then
  return result("Degraded", describe(stalled))
end
if stalled == nil and ready ~= nil and ready.status == "False" and terminal[ready.reason] then
  return result("Degraded", describe(ready))
end
if isTrue(reconciling) then
  return result("Progressing", describe(reconciling))
end

-- A ServiceToken records a Cloudflare call that issues a secret (Create,
-- Rotate, Replace) before making it, and clears it once the secret is stored.
local pending = status.pendingOperation
if pending ~= nil then
  return result("Progressing", (pending.type or "Operation") .. " in progress since " .. (pending.startedAt or "?"))
end

if isTrue(ready) then
  return result("Healthy", ready.message or "")
end
if ready ~= nil then
  return result("Progressing", describe(ready))
end
return result("Progressing", "Waiting for the Ready condition")
