/*
 * An Optty connector written in C: proof that the connector ABI is language-neutral.
 *
 * It speaks the same protocol as plugins/optty (the Rust connector), and answers every golden
 * fixture in fixtures/ exactly as the Rust one does:
 * - build_capture: `POST {base_url}/orders/{order_id, percent-encoded}/capture` with
 *   `Authorization: Bearer <bearer_token>` (the engine appends the credential) and the body
 *   `{"captureReference", "description"?, "amount", "shippingInfo"?}`, the amount a JSON number
 *   written from the call's exact decimal text; 3-decimal currencies and several payments are
 *   refused before any call.
 * - parse_capture: 200/201 captured; 400/422 invalid_request; 401/403 unauthorized; 404 not_found;
 *   409 invalid_state; 429 rate_limited and 5xx platform_unavailable (retryable, with Retry-After);
 *   anything else unknown; an unreadable 2xx is outcome_unknown.
 *
 * No dependency but the C standard library: JSON is read by a small validating scanner and written
 * by hand. Every function is reentrant (no global mutable state), as the ABI requires.
 *
 * Build:  cc -std=c11 -Wall -Wextra -O2 -shared -fPIC -o libcapture_c_connector.so connector.c
 * Check:  capture plugins verify libcapture_c_connector.so --fixtures examples/c-connector/fixtures
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture_connector.h"

/* ------------------------------------------------------------------------------------------ */
/* Output: a growable byte buffer handed to the engine as a capture_buffer.                    */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    int failed; /* an allocation failed: the content is incomplete */
} sb;

static void sb_reserve(sb *b, size_t extra) {
    if (b->failed || b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return;
    }
    b->data = p;
    b->cap = cap;
}

static void sb_add(sb *b, const char *s, size_t n) {
    sb_reserve(b, n);
    if (b->failed) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void sb_str(sb *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(sb *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string literal, escaped exactly as serde_json escapes: `"` `\` and control characters. */
static void sb_json_string(sb *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    sb_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': sb_add(b, "\\\"", 2); break;
        case '\\': sb_add(b, "\\\\", 2); break;
        case '\b': sb_add(b, "\\b", 2); break;
        case '\f': sb_add(b, "\\f", 2); break;
        case '\n': sb_add(b, "\\n", 2); break;
        case '\r': sb_add(b, "\\r", 2); break;
        case '\t': sb_add(b, "\\t", 2); break;
        default:
            if (c < 0x20) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                sb_add(b, esc, 6);
            } else {
                sb_add(b, (const char *)&c, 1);
            }
        }
    }
    sb_add(b, "\"", 1);
}

/* Hands the buffer to the engine (which gives it back to capture_free_buffer). */
static int sb_finish(sb *b, int status, capture_buffer *out) {
    if (b->failed) {
        free(b->data);
        /* Out of memory: nothing can be said; the engine reports the empty error as a contract
         * violation rather than reading garbage. */
        out->ptr = NULL;
        out->len = 0;
        out->cap = 0;
        return CAPTURE_STATUS_ERROR;
    }
    out->ptr = (uint8_t *)b->data;
    out->len = b->len;
    out->cap = b->cap;
    return status;
}

/* A refusal: {"code": ..., "message": ...}. */
static int refuse(capture_buffer *out, const char *code, const char *message) {
    sb b = {0};
    sb_str(&b, "{\"code\":");
    sb_json_string(&b, code, strlen(code));
    sb_str(&b, ",\"message\":");
    sb_json_string(&b, message, strlen(message));
    sb_str(&b, "}");
    return sb_finish(&b, CAPTURE_STATUS_ERROR, out);
}

/* ------------------------------------------------------------------------------------------ */
/* Input: a validating JSON scanner. Values are byte ranges of the input; nothing is copied     */
/* until a string is needed.                                                                   */

typedef struct {
    const char *p;   /* start of the value */
    const char *end; /* end of the document */
} jv;

static const char *ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Each skip_* returns the first byte after the value, or NULL when the JSON is malformed. */
static const char *skip_string(const char *p, const char *end) {
    p++; /* the opening quote */
    while (p < end) {
        unsigned char c = (unsigned char)*p++;
        if (c == '"') return p;
        if (c < 0x20) return NULL;
        if (c == '\\') {
            if (p >= end) return NULL;
            char e = *p++;
            if (e == 'u') {
                for (int i = 0; i < 4; i++)
                    if (p >= end || hex_value(*p++) < 0) return NULL;
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                return NULL;
            }
        }
    }
    return NULL;
}

static const char *skip_number(const char *p, const char *end) {
    if (p < end && *p == '-') p++;
    if (p >= end) return NULL;
    if (*p == '0') {
        p++;
    } else if (is_digit(*p)) {
        while (p < end && is_digit(*p)) p++;
    } else {
        return NULL;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p)) return NULL;
        while (p < end && is_digit(*p)) p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || !is_digit(*p)) return NULL;
        while (p < end && is_digit(*p)) p++;
    }
    return p;
}

static const char *skip_value(const char *p, const char *end, int depth) {
    if (depth > 64) return NULL;
    p = ws(p, end);
    if (p >= end) return NULL;
    switch (*p) {
    case '{':
        p = ws(p + 1, end);
        if (p < end && *p == '}') return p + 1;
        for (;;) {
            p = ws(p, end);
            if (p >= end || *p != '"') return NULL;
            if (!(p = skip_string(p, end))) return NULL;
            p = ws(p, end);
            if (p >= end || *p != ':') return NULL;
            if (!(p = skip_value(p + 1, end, depth + 1))) return NULL;
            p = ws(p, end);
            if (p < end && *p == ',') { p++; continue; }
            if (p < end && *p == '}') return p + 1;
            return NULL;
        }
    case '[':
        p = ws(p + 1, end);
        if (p < end && *p == ']') return p + 1;
        for (;;) {
            if (!(p = skip_value(p, end, depth + 1))) return NULL;
            p = ws(p, end);
            if (p < end && *p == ',') { p++; continue; }
            if (p < end && *p == ']') return p + 1;
            return NULL;
        }
    case '"': return skip_string(p, end);
    case 't': return (end - p >= 4 && !memcmp(p, "true", 4)) ? p + 4 : NULL;
    case 'f': return (end - p >= 5 && !memcmp(p, "false", 5)) ? p + 5 : NULL;
    case 'n': return (end - p >= 4 && !memcmp(p, "null", 4)) ? p + 4 : NULL;
    default: return skip_number(p, end);
    }
}

/* Whether [p, end) is exactly one JSON value (with whitespace around it) and valid UTF-8. */
static int json_valid(const char *p, const char *end) {
    for (const unsigned char *u = (const unsigned char *)p; u < (const unsigned char *)end;) {
        unsigned char c = *u;
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || (size_t)((const unsigned char *)end - u) < n) return 0;
        for (size_t i = 1; i < n; i++)
            if ((u[i] & 0xC0) != 0x80) return 0;
        u += n;
    }
    const char *after = skip_value(p, end, 0);
    return after && ws(after, end) == end;
}

static jv jv_at(const char *p, const char *end) {
    jv v = {ws(p, end), end};
    return v;
}

static int jv_is(jv v, char c) { return v.p && v.p < v.end && *v.p == c; }
static int jv_is_null(jv v) { return !v.p || (v.end - v.p >= 4 && !memcmp(v.p, "null", 4)); }
static int jv_is_number(jv v) { return v.p && v.p < v.end && (*v.p == '-' || is_digit(*v.p)); }

/* The member `key` of an object (the document is already validated); {NULL} when absent. */
static jv jv_get(jv obj, const char *key) {
    jv none = {NULL, obj.end};
    if (!jv_is(obj, '{')) return none;
    size_t klen = strlen(key);
    const char *p = ws(obj.p + 1, obj.end);
    while (p < obj.end && *p == '"') {
        const char *kend = skip_string(p, obj.end);
        int match = (size_t)(kend - p) == klen + 2 && !memcmp(p + 1, key, klen);
        p = ws(kend, obj.end) + 1; /* past ':' */
        p = ws(p, obj.end);
        if (match) return jv_at(p, obj.end);
        p = ws(skip_value(p, obj.end, 0), obj.end);
        if (*p == ',') p = ws(p + 1, obj.end);
    }
    return none;
}

/* The i-th element of an array; {NULL} when out of range. */
static jv jv_index(jv arr, size_t i) {
    jv none = {NULL, arr.end};
    if (!jv_is(arr, '[')) return none;
    const char *p = ws(arr.p + 1, arr.end);
    if (*p == ']') return none;
    for (size_t k = 0;; k++) {
        if (k == i) return jv_at(p, arr.end);
        p = ws(skip_value(p, arr.end, 0), arr.end);
        if (*p != ',') return none;
        p = ws(p + 1, arr.end);
    }
}

static size_t jv_len(jv arr) {
    size_t n = 0;
    while (jv_index(arr, n).p) n++;
    return n;
}

/* The raw text of a value (a number's exact digits, or any value as written). */
static size_t jv_raw_len(jv v) { return (size_t)(skip_value(v.p, v.end, 0) - v.p); }

/* An unescaped copy of a string value (NUL-terminated, length in *len), or NULL if not a string. */
static char *jv_string(jv v, size_t *len) {
    if (!jv_is(v, '"')) return NULL;
    const char *end = skip_string(v.p, v.end) - 1; /* the closing quote */
    char *s = malloc((size_t)(end - v.p) + 1);
    if (!s) return NULL;
    size_t n = 0;
    for (const char *p = v.p + 1; p < end;) {
        if (*p != '\\') {
            s[n++] = *p++;
            continue;
        }
        char e = p[1];
        p += 2;
        switch (e) {
        case 'b': s[n++] = '\b'; break;
        case 'f': s[n++] = '\f'; break;
        case 'n': s[n++] = '\n'; break;
        case 'r': s[n++] = '\r'; break;
        case 't': s[n++] = '\t'; break;
        case 'u': {
            unsigned long cp = 0;
            for (int i = 0; i < 4; i++) cp = cp * 16 + (unsigned long)hex_value(*p++);
            if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                unsigned long lo = 0;
                for (int i = 2; i < 6; i++) lo = lo * 16 + (unsigned long)hex_value(p[i]);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD; /* a lone surrogate */
            if (cp < 0x80) {
                s[n++] = (char)cp;
            } else if (cp < 0x800) {
                s[n++] = (char)(0xC0 | (cp >> 6));
                s[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                s[n++] = (char)(0xE0 | (cp >> 12));
                s[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                s[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                s[n++] = (char)(0xF0 | (cp >> 18));
                s[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                s[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                s[n++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: s[n++] = e; /* \" \\ \/ */
        }
    }
    s[n] = '\0';
    if (len) *len = n;
    return s;
}

/* A JSON integer in [0, max]; -1 when it is not one. */
static long jv_uint(jv v, long max) {
    if (!jv_is_number(v) || *v.p == '-') return -1;
    long n = 0;
    const char *p = v.p;
    for (; p < v.end && is_digit(*p); p++) {
        n = n * 10 + (*p - '0');
        if (n > max) return -1;
    }
    if (p < v.end && (*p == '.' || *p == 'e' || *p == 'E')) return -1;
    return n;
}

/* Compact text of any value, as serde_json prints a Value: whitespace outside strings removed. */
static void sb_compact(sb *b, jv v) {
    const char *end = v.p + jv_raw_len(v);
    for (const char *p = v.p; p < end;) {
        if (*p == '"') {
            const char *q = skip_string(p, end);
            sb_add(b, p, (size_t)(q - p));
            p = q;
        } else {
            if (!(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) sb_add(b, p, 1);
            p++;
        }
    }
}

/* A value as text, like the Rust connector's `text_of`: a string as itself, an array as its items
 * joined with "; ", anything else as compact JSON. */
static void sb_text_of(sb *b, jv v) {
    if (jv_is(v, '"')) {
        size_t n;
        char *s = jv_string(v, &n);
        if (s) sb_add(b, s, n);
        free(s);
    } else if (jv_is(v, '[')) {
        size_t count = jv_len(v);
        for (size_t i = 0; i < count; i++) {
            if (i) sb_str(b, "; ");
            sb_text_of(b, jv_index(v, i));
        }
    } else {
        sb_compact(b, v);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Amounts: decimal text, never a float.                                                       */

/* Writes the decimal `text` with exactly `places` decimals into b (a JSON number and a decimal
 * string alike). Returns 0, or -1 when it is not a non-negative decimal that fits `places`. */
static int sb_amount(sb *b, const char *text, size_t n, long places) {
    size_t i = 0, int_start, int_end, frac_start, frac_end;
    int_start = i;
    while (i < n && is_digit(text[i])) i++;
    int_end = i;
    if (int_end == int_start) return -1;
    frac_start = frac_end = i;
    if (i < n && text[i] == '.') {
        frac_start = ++i;
        while (i < n && is_digit(text[i])) i++;
        frac_end = i;
        if (frac_end == frac_start) return -1;
    }
    if (i != n) return -1;
    /* Trailing zeros beyond `places` are harmless (100.100 is 100.10); other digits are not. */
    size_t frac_len = frac_end - frac_start;
    for (size_t k = (size_t)places; k < frac_len; k++)
        if (text[frac_start + k] != '0') return -1;
    /* Leading zeros of the integer part go, as in a decimal's canonical text. */
    while (int_end - int_start > 1 && text[int_start] == '0') int_start++;
    sb_add(b, text + int_start, int_end - int_start);
    if (places > 0) {
        sb_add(b, ".", 1);
        for (long k = 0; k < places; k++) sb_add(b, (size_t)k < frac_len ? &text[frac_start + k] : "0", 1);
    }
    return 0;
}

/* The amount of a capture call, checked like the Rust connector checks it; on failure the
 * refusal is already written to *out and the function returns its status, otherwise -1. */
static int call_amount(jv call, sb *amount, capture_buffer *out) {
    size_t clen = 0, alen = 0;
    char *currency = jv_string(jv_get(call, "currency"), &clen);
    long exponent = jv_uint(jv_get(call, "currency_exponent"), 4);
    char *text = jv_string(jv_get(call, "amount"), &alen);
    int status = -1;
    char msg[256];
    if (!currency || exponent < 0 || !text) {
        status = refuse(out, "invalid_call", "capture call: currency, currency_exponent and amount are required");
    } else if (exponent > 2) {
        snprintf(msg, sizeof msg, "currency %s has %ld decimal places; Optty amounts allow at most 2", currency,
                 exponent);
        status = refuse(out, "unsupported_currency", msg);
    } else if (text[0] == '-') {
        snprintf(msg, sizeof msg, "amount: %s %s is negative", text, currency);
        status = refuse(out, "invalid_amount", msg);
    } else if (sb_amount(amount, text, alen, exponent) != 0) {
        snprintf(msg, sizeof msg, "amount: `%s` is not a decimal with at most %ld places", text, exponent);
        status = refuse(out, "invalid_amount", msg);
    }
    free(currency);
    free(text);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* The connector.                                                                              */

static const char MANIFEST[] =
    "{\"id\":\"optty_c\",\"name\":\"Optty (C example)\",\"version\":\"0.1.0\",\"schema\":1,"
    "\"capabilities\":{\"partial_capture\":\"per_payment_method\",\"multiple_payments_per_call\":false,"
    "\"max_payments_per_call\":1,\"asynchronous\":false,\"amount_encoding\":\"decimal_number2\","
    "\"max_currency_exponent\":2,\"idempotency_key\":true,\"status_query\":false},"
    "\"allowed_hosts\":[\"*.optty.com\"],\"credentials\":[\"bearer_token\"],\"settings\":[]}";

static int c_manifest(capture_buffer *out) {
    if (!out) return CAPTURE_STATUS_ERROR;
    sb b = {0};
    sb_str(&b, MANIFEST);
    return sb_finish(&b, CAPTURE_STATUS_OK, out);
}

/* Validates a message and its schema version; returns -1 when it may be used, or the status of
 * the refusal written to *out. */
static int check_message(const uint8_t *input, size_t len, capture_buffer *out, const char *what, jv *doc) {
    const char *p = (const char *)input, *end = p + len;
    char msg[128];
    if (!input || !json_valid(p, end)) {
        snprintf(msg, sizeof msg, "%s: not a valid UTF-8 JSON document", what);
        return refuse(out, "invalid_call", msg);
    }
    *doc = jv_at(p, end);
    if (!jv_is(*doc, '{')) {
        snprintf(msg, sizeof msg, "%s: not a JSON object", what);
        return refuse(out, "invalid_call", msg);
    }
    long schema = jv_uint(jv_get(*doc, "schema"), 1000000);
    if (schema != CAPTURE_SCHEMA_VERSION) {
        snprintf(msg, sizeof msg, "message schema %ld is not supported; this connector speaks %d", schema,
                 CAPTURE_SCHEMA_VERSION);
        return refuse(out, "schema_mismatch", msg);
    }
    return -1;
}

static void sb_percent_encoded(sb *b, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit((char)c) || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            sb_add(b, (const char *)&c, 1);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            sb_add(b, esc, 3);
        }
    }
}

/* Appends `"name":<string member of obj>` for the shipping object; returns 0 if it is a string. */
static int sb_member_string(sb *b, const char *name, jv obj, const char *key) {
    size_t n;
    char *s = jv_string(jv_get(obj, key), &n);
    if (!s) return -1;
    sb_str(b, name);
    sb_json_string(b, s, n);
    free(s);
    return 0;
}

static int c_build_capture(const uint8_t *input, size_t len, capture_buffer *out) {
    if (!out) return CAPTURE_STATUS_ERROR;
    jv call;
    int status = check_message(input, len, out, "capture call", &call);
    if (status >= 0) return status;

    jv payments = jv_get(call, "payments");
    size_t count = jv_len(payments);
    if (count > 1) {
        char msg[128];
        snprintf(msg, sizeof msg, "Optty captures one payment per order; the call names %zu", count);
        return refuse(out, "unsupported_payments", msg);
    }
    size_t order_len = 0, key_len = 0, base_len = 0;
    char *order_id = jv_string(jv_get(call, "order_id"), &order_len);
    char *key = jv_string(jv_get(call, "idempotency_key"), &key_len);
    char *base_url = jv_string(jv_get(call, "base_url"), &base_len);
    sb amount = {0}, body = {0}, req = {0};
    if (!order_id || !key || !base_url) {
        status = refuse(out, "invalid_call", "capture call: base_url, order_id and idempotency_key are required");
        goto done;
    }
    if (order_len == 0) {
        status = refuse(out, "invalid_call", "order_id is empty");
        goto done;
    }
    if (key_len == 0) {
        status = refuse(out, "invalid_call", "idempotency_key is empty: it is Optty's captureReference");
        goto done;
    }
    if ((status = call_amount(call, &amount, out)) >= 0) goto done;

    /* The body, in the order Optty documents. */
    sb_str(&body, "{\"captureReference\":");
    sb_json_string(&body, key, key_len);
    jv description = jv_get(call, "description");
    if (!jv_is_null(description)) {
        if (sb_member_string(&body, ",\"description\":", call, "description") != 0) {
            status = refuse(out, "invalid_call", "capture call: description must be a string or null");
            goto done;
        }
    }
    sb_str(&body, ",\"amount\":");
    sb_add(&body, amount.data, amount.len);
    jv shipping = jv_get(call, "shipping");
    if (!jv_is_null(shipping)) {
        sb_str(&body, ",\"shippingInfo\":{");
        if (sb_member_string(&body, "\"shippingCompany\":", shipping, "company") != 0 ||
            sb_member_string(&body, ",\"shippingMethod\":", shipping, "method") != 0 ||
            sb_member_string(&body, ",\"trackingNumber\":", shipping, "tracking_number") != 0) {
            status = refuse(out, "invalid_call", "capture call: shipping needs company, method and tracking_number");
            goto done;
        }
        sb_str(&body, "}");
    }
    sb_str(&body, "}");

    /* The request. */
    while (base_len > 0 && base_url[base_len - 1] == '/') base_len--;
    sb url = {0};
    sb_add(&url, base_url, base_len);
    sb_str(&url, "/orders/");
    sb_percent_encoded(&url, order_id, order_len);
    sb_str(&url, "/capture");
    sb_str(&req, "{\"method\":\"POST\",\"url\":");
    sb_json_string(&req, url.data ? url.data : "", url.len);
    free(url.data);
    sb_str(&req, ",\"headers\":[{\"name\":\"Accept\",\"value\":\"application/json\"},"
                 "{\"name\":\"Content-Type\",\"value\":\"application/json\"},"
                 "{\"name\":\"Authorization\",\"value\":\"Bearer \",\"secret\":\"bearer_token\"}],"
                 "\"body\":");
    sb_json_string(&req, body.data ? body.data : "", body.len);
    sb_str(&req, "}");
    if (url.failed || body.failed) req.failed = 1;
    status = sb_finish(&req, CAPTURE_STATUS_OK, out);
    req.data = NULL; /* handed over */

done:
    free(order_id);
    free(key);
    free(base_url);
    free(amount.data);
    free(body.data);
    free(req.data);
    return status;
}

/* {"status":"failed",...} for a platform's refusal. */
static void sb_failure(sb *b, const char *kind, int retryable, long http_status, const char *message, size_t mlen,
                       long long retry_after_ms) {
    sb_str(b, "{\"status\":\"failed\",\"captured_amount\":null,\"platform_capture_id\":null,\"failure\":{\"kind\":");
    sb_json_string(b, kind, strlen(kind));
    sb_str(b, retryable ? ",\"retryable\":true" : ",\"retryable\":false");
    sb_printf(b, ",\"platform_code\":\"%ld\",\"message\":", http_status);
    sb_json_string(b, message, mlen);
    if (retry_after_ms >= 0) sb_printf(b, ",\"retry_after_ms\":%lld", retry_after_ms);
    sb_str(b, "}}");
}

/* The Retry-After header in milliseconds, or -1. */
static long long retry_after_ms(jv headers) {
    size_t count = jv_len(headers);
    for (size_t i = 0; i < count; i++) {
        jv pair = jv_index(headers, i);
        size_t nlen = 0, vlen = 0;
        char *name = jv_string(jv_index(pair, 0), &nlen);
        char *value = jv_string(jv_index(pair, 1), &vlen);
        long long ms = -1;
        int is_retry_after = name && nlen == 11;
        for (size_t k = 0; is_retry_after && k < nlen; k++) {
            char c = name[k];
            if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
            if (c != "retry-after"[k]) is_retry_after = 0;
        }
        if (is_retry_after && value) {
            const char *p = value, *end = value + vlen;
            while (p < end && (*p == ' ' || *p == '\t')) p++;
            while (end > p && (end[-1] == ' ' || end[-1] == '\t')) end--;
            unsigned long long secs = 0;
            int ok = p < end;
            for (; ok && p < end; p++) {
                if (!is_digit(*p) || secs > 1000000000000ULL) ok = 0;
                else secs = secs * 10 + (unsigned long long)(*p - '0');
            }
            if (ok) ms = (long long)(secs * 1000);
        }
        free(name);
        free(value);
        if (is_retry_after) return ms;
    }
    return -1;
}

static int c_parse_capture(const uint8_t *input, size_t len, capture_buffer *out) {
    if (!out) return CAPTURE_STATUS_ERROR;
    jv doc;
    int status = check_message(input, len, out, "parse call", &doc);
    if (status >= 0) return status;
    jv call = jv_get(doc, "call");
    jv response = jv_get(doc, "response");
    long http = jv_uint(jv_get(response, "status"), 999);
    size_t blen = 0;
    char *body = jv_string(jv_get(response, "body"), &blen);
    sb r = {0}, amount = {0};
    if (!jv_is(call, '{') || http < 0 || !body) {
        free(body);
        return refuse(out, "invalid_call", "parse call: call, response.status and response.body are required");
    }
    /* The platform's body is JSON text inside the message: scanned the same way. */
    const char *bp = body, *bend = body + blen;
    int body_is_object = json_valid(bp, bend) && jv_is(jv_at(bp, bend), '{');
    jv parsed = body_is_object ? jv_at(bp, bend) : (jv){NULL, bend};

    if (http == 200 || http == 201) {
        jv captured = jv_get(parsed, "capturedAmount");
        int readable = body_is_object && (jv_is_null(captured) || jv_is_number(captured) || jv_is(captured, '"'));
        if (!readable) {
            sb msg = {0};
            sb_str(&msg, "unreadable success body: ");
            sb_add(&msg, body, blen);
            sb_failure(&r, "outcome_unknown", 0, http, msg.data ? msg.data : "", msg.len, -1);
            if (msg.failed) r.failed = 1;
            free(msg.data);
        } else {
            sb requested = {0};
            if ((status = call_amount(call, &requested, out)) >= 0) {
                free(requested.data);
                goto done;
            }
            free(requested.data);
            long exponent = jv_uint(jv_get(call, "currency_exponent"), 4);
            int ok;
            if (jv_is_null(captured)) {
                size_t alen = 0;
                char *text = jv_string(jv_get(call, "amount"), &alen);
                ok = text && sb_amount(&amount, text, alen, exponent) == 0;
                free(text);
            } else if (jv_is(captured, '"')) {
                size_t alen = 0;
                char *text = jv_string(captured, &alen);
                ok = text && sb_amount(&amount, text, alen, exponent) == 0;
                free(text);
            } else {
                ok = sb_amount(&amount, captured.p, jv_raw_len(captured), exponent) == 0;
            }
            if (!ok) {
                status = refuse(out, "invalid_response", "capturedAmount is not an amount in the order currency");
                goto done;
            }
            jv id = jv_get(parsed, "captureId");
            if (jv_is_null(id)) id = jv_get(parsed, "captureReference");
            sb_str(&r, "{\"status\":\"captured\",\"captured_amount\":");
            sb_json_string(&r, amount.data ? amount.data : "", amount.len);
            sb_str(&r, ",\"platform_capture_id\":");
            if (jv_is_null(id)) {
                sb_str(&r, "null");
            } else {
                sb text = {0};
                sb_text_of(&text, id);
                sb_json_string(&r, text.data ? text.data : "", text.len);
                if (text.failed) r.failed = 1;
                free(text.data);
            }
            sb_str(&r, ",\"failure\":null}");
        }
    } else {
        sb message = {0};
        jv m = jv_get(parsed, "message");
        if (!jv_is_null(m)) {
            sb_text_of(&message, m);
        } else {
            const char *p = body, *end = body + blen;
            while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
            while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r')) end--;
            sb_add(&message, p, (size_t)(end - p));
        }
        const char *kind = "unknown";
        int retryable = 0;
        long long wait = -1;
        if (http == 400 || http == 422) kind = "invalid_request";
        else if (http == 401 || http == 403) kind = "unauthorized";
        else if (http == 404) kind = "not_found";
        else if (http == 409) kind = "invalid_state";
        else if (http == 429 || (http >= 500 && http <= 599)) {
            kind = http == 429 ? "rate_limited" : "platform_unavailable";
            retryable = 1;
            wait = retry_after_ms(jv_get(response, "headers"));
        }
        sb_failure(&r, kind, retryable, http, message.data ? message.data : "", message.len, wait);
        if (message.failed) r.failed = 1;
        free(message.data);
    }
    status = sb_finish(&r, CAPTURE_STATUS_OK, out);
    r.data = NULL; /* handed over */

done:
    free(body);
    free(amount.data);
    free(r.data);
    return status;
}

static void c_free_buffer(capture_buffer buf) { free(buf.ptr); }

static const capture_connector_descriptor DESCRIPTOR = {
    .header = {CAPTURE_MAGIC, (uint32_t)sizeof(capture_connector_descriptor), CAPTURE_ABI_MAJOR, CAPTURE_ABI_MINOR},
    .manifest = c_manifest,
    .build_capture = c_build_capture,
    .parse_capture = c_parse_capture,
    .free_buffer = c_free_buffer,
    .build_status = NULL, /* no status query: the manifest says "status_query": false */
    .parse_status = NULL,
    /* No 1.2 per-call context: the engine sends the call again with the answer (ParseCall). */
    .build_capture_with = NULL,
    .parse_capture_with = NULL,
    .free_context = NULL,
};

const capture_connector_descriptor *capture_connector_entry(void) { return &DESCRIPTOR; }
