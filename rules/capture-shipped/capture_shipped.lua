-- Capture only what shipped: the shop puts the value of what left the warehouse in the
-- request's metadata as `shipped_amount` (a decimal string such as "80.00"). The capture is
-- adjusted down to it; nothing shipped is a reject; an unknown shipped amount is held.
---@type Rule
local rule = {
  name = "capture-shipped",
  stage = "pre-validate",
  priority = 30,
  decide = function(ctx)
    local shipped = ctx.metadata.shipped_amount
    if shipped == nil then
      return hold("metadata.shipped_amount is missing: capture only what shipped")
    end
    if type(shipped) ~= "string" then
      return hold("metadata.shipped_amount must be a decimal string such as \"80.00\"")
    end
    local minor = capture.minor(shipped) -- a bad amount raises: the capture is held
    if minor <= 0 then
      return reject("nothing_shipped", "nothing has shipped yet")
    end
    if minor < ctx.amount.minor then
      local d = adjust(shipped)
      d.notes = { "capturing the shipped " .. shipped .. " of " .. ctx.amount.value }
      return d
    end
    return allow()
  end,
}

return rule
