-- Never capture physical goods before the carrier's tracking number exists.
return {
  name = "require-tracking",
  stage = "pre-validate",
  priority = 20,
  decide = function(ctx)
    if ctx.metadata.requires_shipping == true and ctx.shipping == nil then
      return reject("no_tracking", "physical goods are captured only once a tracking number exists")
    end
    return allow()
  end,
}
