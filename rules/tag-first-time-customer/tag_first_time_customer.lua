-- Tag every capture of a first-time customer (metadata `customer_orders = 0`), so the shop
-- can send a welcome pack. Post-capture: it sees what happened and never changes it.
---@type Rule
local rule = {
  name = "tag-first-time-customer",
  stage = "post-capture",
  observe = function(ctx)
    local status = ctx.outcome.status
    if ctx.metadata.customer_orders == 0 and (status == "captured" or status == "pending") then
      return observe_result({
        tags = { "first-time-customer" },
        notes = { "first capture for this customer (" .. status .. ")" },
      })
    end
    return nil
  end,
}

return rule
