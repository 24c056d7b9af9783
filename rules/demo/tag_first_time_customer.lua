-- Tag the first capture of a customer, so the shop can send a welcome pack.
return {
  name = "tag-first-time-customer",
  stage = "post-capture",
  observe = function(ctx)
    if ctx.metadata.customer_orders == 0 and ctx.outcome.status == "captured" then
      return { tags = { "first-time-customer" }, notes = { "first capture for this customer" } }
    end
    return nil
  end,
}
