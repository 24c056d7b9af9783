-- Hold any capture over 2,000.00 (in the order's currency) for a person to review.
return {
  name = "hold-large-orders",
  stage = "pre-validate",
  priority = 10,
  decide = function(ctx)
    if ctx.amount.minor > capture.minor("2000.00") then
      return hold("captures over 2000.00 " .. ctx.currency.code .. " need a review (this one is "
        .. ctx.amount.value .. ")")
    end
    return allow()
  end,
}
