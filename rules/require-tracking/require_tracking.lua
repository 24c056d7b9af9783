-- Never capture before the carrier's tracking number exists. Digital goods (metadata
-- `digital = true`) ship nothing and are exempt.
---@type Rule
local rule = {
  name = "require-tracking",
  stage = "pre-validate",
  priority = 20,
  decide = function(ctx)
    if ctx.metadata.digital == true then
      return allow()
    end
    local shipping = ctx.shipping
    if shipping == nil then
      return reject("no_tracking", "goods are captured only once the carrier's tracking number exists")
    end
    local d = allow()
    d.notes = { "shipped with " .. shipping.company .. ", tracking " .. shipping.tracking_number }
    return d
  end,
}

return rule
