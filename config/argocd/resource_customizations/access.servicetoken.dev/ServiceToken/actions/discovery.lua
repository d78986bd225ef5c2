-- Argo CD actions of a ServiceToken. Each sets a request annotation that the
-- operator acts on once (api/v1alpha1/conditions.go):
--   rotate:  issue a new client secret; the previous one keeps working for
--            spec.rotation.gracePeriod (default 24h).
--   refresh: extend the expiry; the client secret stays the same.
-- Both are disabled while the ServiceToken is being deleted (the operator
-- ignores requests then); refresh is disabled for a "forever" token, which
-- has no expiry to extend.
local actions = {}
local deleting = obj.metadata.deletionTimestamp ~= nil
local forever = obj.spec ~= nil and obj.spec.duration == "forever"
actions["rotate"] = { ["disabled"] = deleting }
actions["refresh"] = { ["disabled"] = deleting or forever }
return actions
