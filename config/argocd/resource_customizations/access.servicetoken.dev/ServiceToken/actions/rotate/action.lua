-- Ask the operator to rotate the client secret now: any new value of the
-- annotation triggers one rotation, echoed in status.lastHandledRotateRequest.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["access.servicetoken.dev/rotate-requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
