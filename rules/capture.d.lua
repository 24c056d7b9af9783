---@meta
-- Type stubs for capture rules (LuaLS / lua-language-server). They describe what a rule file
-- can use; the engine never loads this file. With rules/.luarc.json your editor completes
-- `ctx.` fields and the decision constructors, and flags typos and wrong argument types.
-- The guide is rules/README.md.

---An amount of money. Never a float: `value` is the exact decimal text, `minor` the whole
---number of minor units (cents) of the capture's currency.
---@class Money
---@field value string  # e.g. "100.10"
---@field minor integer # e.g. 10010

---@class Currency
---@field code string      # ISO 4217, e.g. "EUR"
---@field exponent integer # decimal places, e.g. 2 (JPY: 0)

---A payment the platform authorized for the order.
---@class Payment
---@field id string
---@field amount Money
---@field method string?           # e.g. "afterpay"
---@field partial_capture boolean? # whether this payment may be captured in parts

---A capture made earlier on the order.
---@class PriorCapture
---@field reference string
---@field payment_id string?
---@field amount Money

---@class Order
---@field id string
---@field amount Money
---@field surcharge Money
---@field payments Payment[]
---@field captures PriorCapture[]

---@class Shipping
---@field company string
---@field method string
---@field tracking_number string

---The capture's clock: the same value for every rule of a capture, and in tests.
---@class Clock
---@field unix integer    # seconds since 1970-01-01T00:00:00Z
---@field rfc3339 string  # e.g. "2026-11-21T10:00:00.000Z"

---@alias OutcomeStatus "captured"|"pending"|"held"|"rejected"|"failed"|"already_captured"

---What the platform did (post-capture rules only).
---@class Outcome
---@field status OutcomeStatus
---@field amount Money?               # captured and pending
---@field platform_capture_id string? # captured and pending, when the platform gives one
---@field by string?                  # held and rejected: who decided, e.g. "rule:hold-large-orders"
---@field code string?                # rejected: the reject code; failed: the platform's code
---@field message string?             # held, rejected, failed, already_captured
---@field kind string?                # failed: "invalid_request", "outcome_unknown", "rate_limited", ...
---@field retryable boolean?          # failed

---What a rule sees of one capture. Read-only: copy values into local variables.
---@class Ctx
---@field platform string        # the connector, e.g. "optty"
---@field idempotency_key string
---@field description string?
---@field currency Currency
---@field amount Money            # what the engine intends to capture ("full" resolved)
---@field requested_full boolean  # the request asked for everything left
---@field capturable Money        # what the order still allows
---@field order Order
---@field shipping Shipping?
---@field metadata table<string, string|integer|boolean> # the shop's own fields from the request
---@field now Clock
---@field outcome Outcome?        # post-capture only

---A follow-up action for the shop's systems (post-capture), e.g. `{ action = "void_remaining" }`.
---Values are strings, integers or booleans.
---@class FollowUp
---@field action string
---@field [string] string|integer|boolean

---@alias Verdict "allow"|"reject"|"hold"|"adjust"

---A pre-validate rule's answer. Use the constructors; the table they return may also get
---`tags`, `notes` and `follow_ups`.
---@class Decision
---@field decision Verdict
---@field code string?            # reject
---@field reason string?          # reject and hold (at most 1000 bytes)
---@field amount (string|integer)? # adjust: "150.00" or minor units
---@field tags string[]?          # at most 64, each at most 100 bytes
---@field notes string[]?         # at most 64, each at most 1000 bytes
---@field follow_ups FollowUp[]?  # at most 64, at most 16 fields each

---A post-capture rule's answer (or nil).
---@class ObserveResult
---@field tags string[]?
---@field notes string[]?
---@field follow_ups FollowUp[]?

---@alias Stage "pre-validate"|"post-capture"

---What a rule file returns.
---@class Rule
---@field name string                                 # unique in the folder: a-z, 0-9, "-", "_"
---@field stage Stage
---@field priority integer?                           # default 0; lower runs first
---@field decide (fun(ctx: Ctx): Decision)?           # pre-validate rules
---@field observe (fun(ctx: Ctx): ObserveResult?)?    # post-capture rules

---Go ahead.
---@return Decision
function allow() end

---Never capture this request.
---@param code string   # short and stable, e.g. "no_tracking"
---@param reason string # for people
---@return Decision
function reject(code, reason) end

---Do not capture now; a person decides.
---@param reason string
---@return Decision
function hold(reason) end

---Capture another amount: a decimal string such as "150.00" or whole minor units such as 15000
---(never a float such as 150.0). The engine checks it again against the order.
---@param amount string|integer
---@return Decision
function adjust(amount) end

---Tags, notes and follow-ups of a post-capture rule.
---@param result ObserveResult
---@return ObserveResult
function observe_result(result) end

capture = {}

---A written amount in minor units of the capture's currency, exactly: `capture.minor("2000.00")`
---is 200000 for EUR and 2000 for JPY ("2000"). Raises an error for an amount the currency
---cannot have (the capture is then held).
---@param amount string
---@return integer
function capture.minor(amount) end
