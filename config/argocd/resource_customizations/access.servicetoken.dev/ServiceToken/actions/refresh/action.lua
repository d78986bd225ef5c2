-- Ask the operator to extend the token's expiry now: any new value of the
-- annotation triggers one refresh, echoed in status.lastHandledRefreshRequest.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["access.servicetoken.dev/refresh-requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
