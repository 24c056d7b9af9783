-- Hold orders over 2,000.00 EUR for a person to review before any money is taken.
-- Orders in other currencies are not affected (there is no exchange rate here).
---@type Rule
local rule = {
  name = "hold-large-orders",
  stage = "pre-validate",
  priority = 10,
  decide = function(ctx)
    if ctx.currency.code == "EUR" and ctx.order.amount.minor > capture.minor("2000.00") then
      return hold("orders over 2,000.00 EUR are reviewed before capture (this one is "
        .. ctx.order.amount.value .. " EUR)")
    end
    return allow()
  end,
}

return rule
