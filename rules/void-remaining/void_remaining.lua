-- After the last shipment of an order (metadata `final_shipment = true`) is captured, ask for
-- what is left of the authorization to be voided, so the customer's money is released.
-- Post-capture rules never change the outcome: the follow-up is a request in the report,
-- for the shop's systems to act on.
---@type Rule
local rule = {
  name = "void-remaining",
  stage = "post-capture",
  observe = function(ctx)
    local o = ctx.outcome
    if ctx.metadata.final_shipment ~= true or o.status ~= "captured" then
      return nil
    end
    local left = ctx.capturable.minor - o.amount.minor
    if left <= 0 then
      return nil
    end
    return observe_result({
      tags = { "authorization-remainder" },
      follow_ups = {
        { action = "void_remaining", order = ctx.order.id, amount_minor = left, currency = ctx.currency.code },
      },
    })
  end,
}

return rule
