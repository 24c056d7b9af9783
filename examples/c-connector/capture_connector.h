/*
 * capture_connector.h: the capture engine's connector ABI, version 1.3, for plugins written in C
 * (or any language with a C FFI).
 *
 * This header mirrors `capture_connector_api::abi` exactly; the normative specification is the
 * crate documentation of `capture-connector-api` (`cargo doc -p capture-connector-api --open`)
 * and plugins/README.md. The e2e tests compile it and compare every size and offset with the
 * Rust definitions.
 *
 * In short:
 * - Export one symbol, `capture_connector_entry`, returning a pointer to a descriptor with static
 *   storage duration (it must stay valid as long as the library is loaded: forever).
 * - The descriptor starts with a header {magic, struct_size, abi_major, abi_minor}. The engine
 *   refuses another major and a newer minor; it loads an older minor and reads no field past
 *   `struct_size`. Set `struct_size` to `sizeof(capture_connector_descriptor)` of the header you
 *   built against (or CAPTURE_DESCRIPTOR_SIZE_V1_0 with abi_minor 0 for a 1.0 descriptor).
 * - Every call function gets a UTF-8 JSON message (`len` bytes at `input`, owned by the engine,
 *   valid only during the call, not NUL-terminated) and writes a buffer into `*out` that the plugin
 *   allocated. The engine copies what it needs and hands the buffer back, unchanged, to the same
 *   plugin's `free_buffer`, exactly once. Return CAPTURE_STATUS_OK with the result JSON,
 *   CAPTURE_STATUS_ERROR with {"code": "...", "message": "..."}, or CAPTURE_STATUS_PANIC with a
 *   UTF-8 text. A success with a NULL or empty buffer, another status code, output over
 *   CAPTURE_MAX_OUTPUT bytes, output that is not UTF-8 JSON of the expected message, and a request
 *   URL whose host is neither loopback nor in the manifest's `allowed_hosts` are all refused.
 * - Every function may be called from many threads at once: keep no unsynchronised mutable state.
 * - Messages are JSON with schema version CAPTURE_SCHEMA_VERSION; refuse a call whose "schema" is
 *   another version with CAPTURE_STATUS_ERROR and the code "schema_mismatch". Unknown fields in
 *   what you return are refused. Amounts are decimal strings ("100.10"), never floats.
 * - Never let a C++ exception or a longjmp cross the boundary, and never abort(): the engine
 *   process would go down with the plugin.
 * - 1.2 adds an optional per-call context (build_capture_with, parse_capture_with, free_context:
 *   all three or none; NULL: the engine calls build_capture and parse_capture as before). A plugin
 *   that sets them keeps what it read of a CaptureCall and gets only the HttpResponse to parse.
 * - 1.3 adds optional struct messages for the capture (build_capture_struct, parse_capture_struct,
 *   free_output: all three or none, and only together with the 1.2 three, whose free_context
 *   releases the struct build's contexts too; NULL: the engine uses the JSON functions). The call
 *   and the answer cross as C structs of capture_str (UTF-8, `len` bytes at `ptr`, not
 *   NUL-terminated) instead of JSON:
 *   - What the engine passes in (capture_raw_capture_call, capture_raw_http_response) is the
 *     engine's, valid only during the call: copy what you keep.
 *   - What the plugin writes out (capture_raw_http_request, capture_raw_capture_result) points into
 *     memory the plugin keeps until the engine hands the struct's `owner` to free_output, exactly
 *     once, after reading it, whatever the status returned (NULL owner: nothing to free).
 *   - Strings: in a required field a NULL `ptr` is the empty string (with `len` 0); in an optional
 *     field (marked below) a NULL `ptr` is "absent" and any other pointer "present", even with
 *     `len` 0. A NULL `ptr` with a nonzero `len` is refused, as is a string that is not UTF-8.
 *   - Lists (`x`, `x_len`): `x` may be NULL only when `x_len` is 0. A request has at most 64
 *     headers; the strings and lists of one answer count against CAPTURE_MAX_OUTPUT.
 *   - On CAPTURE_STATUS_ERROR or CAPTURE_STATUS_PANIC the plugin writes *error as a 1.x function
 *     writes *out ({"code": ..., "message": ...} JSON, or the panic's text), freed by free_buffer.
 */
#ifndef CAPTURE_CONNECTOR_H
#define CAPTURE_CONNECTOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#define CAPTURE_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define CAPTURE_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* The ABI version this header describes. */
#define CAPTURE_ABI_MAJOR 1
#define CAPTURE_ABI_MINOR 3
/* 0x43415054 ("CAPT" in ASCII, most significant byte first), compared as a native-endian u32:
 * the first field of every descriptor. */
#define CAPTURE_MAGIC 0x43415054u
/* The name of the entry function. */
#define CAPTURE_ENTRY_SYMBOL "capture_connector_entry"
/* The JSON message schema version. */
#define CAPTURE_SCHEMA_VERSION 1

/* Return codes of every function but free_buffer. */
#define CAPTURE_STATUS_OK 0    /* *out holds the result JSON */
#define CAPTURE_STATUS_ERROR 1 /* *out holds {"code": "...", "message": "..."} */
#define CAPTURE_STATUS_PANIC 2 /* *out holds a UTF-8 text: what went wrong inside the plugin */

/* The largest output the engine accepts, in bytes (1 MiB). */
#define CAPTURE_MAX_OUTPUT (1u << 20)

/* A byte buffer the plugin allocated. `ptr` is NULL only for an empty buffer. `cap` is for the
 * plugin's own bookkeeping (Rust plugins keep a Vec's capacity there); the host never reads it. */
typedef struct capture_buffer {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} capture_buffer;

/* The fixed head of every descriptor, whatever its minor version. */
typedef struct capture_descriptor_header {
    uint32_t magic;       /* CAPTURE_MAGIC */
    uint32_t struct_size; /* sizeof the descriptor as the plugin built it */
    uint16_t abi_major;   /* CAPTURE_ABI_MAJOR */
    uint16_t abi_minor;   /* CAPTURE_ABI_MINOR (or an older minor with its smaller descriptor) */
} capture_descriptor_header;

/* Writes the manifest JSON into *out. */
typedef int (*capture_manifest_fn)(capture_buffer *out);
/* Reads a JSON message (`len` bytes at `input`) and writes the answer JSON into *out. */
typedef int (*capture_call_fn)(const uint8_t *input, size_t len, capture_buffer *out);
/* Frees a buffer this plugin wrote (passed by value, as written). */
typedef void (*capture_free_fn)(capture_buffer buf);
/* 1.2: build_capture, and on CAPTURE_STATUS_OK also writes into *context an opaque value of the
 * plugin's (what it keeps of the call; NULL allowed). */
typedef int (*capture_build_with_fn)(const uint8_t *input, size_t len, capture_buffer *out, void **context);
/* 1.2: reads the answer (HttpResponse JSON) to the request built with `context`; consumes it,
 * whatever the status returned. */
typedef int (*capture_parse_with_fn)(void *context, const uint8_t *input, size_t len, capture_buffer *out);
/* 1.2: releases a context no parse consumed (the request was not sent or got no answer). */
typedef void (*capture_free_context_fn)(void *context);

/* 1.3: a UTF-8 string, `len` bytes at `ptr`, not NUL-terminated, owned by the side that wrote it.
 * Required field: NULL `ptr` is the empty string. Optional field: NULL `ptr` is absent. A NULL
 * `ptr` with a nonzero `len` is refused in both. */
typedef struct capture_str {
    const uint8_t *ptr;
    size_t len;
} capture_str;

/* 1.3: a name and a value: a setting of a call, a header of a response. */
typedef struct capture_pair {
    capture_str name;
    capture_str value;
} capture_pair;

/* 1.3: a payment of a call (CallPayment). */
typedef struct capture_raw_payment {
    capture_str id;         /* the payment's id */
    capture_str amount;     /* amount to capture from it */
    capture_str authorized; /* amount authorized on it */
    capture_str method;     /* optional: the payment method */
} capture_raw_payment;

/* 1.3: the shipping details of a call (CallShipping). */
typedef struct capture_raw_shipping {
    capture_str company;
    capture_str method;
    capture_str tracking_number;
} capture_raw_shipping;

/* 1.3: a CaptureCall, filled and owned by the engine, valid during the call only. Settings are
 * sorted by name, each name once. A NULL `shipping` is "no shipping". */
typedef struct capture_raw_capture_call {
    uint32_t struct_size;       /* sizeof as the engine was built: a later minor may append fields */
    uint32_t schema;            /* CAPTURE_SCHEMA_VERSION */
    uint32_t currency_exponent; /* decimal places of the currency */
    uint32_t full;              /* 1 when the amount is the whole capturable amount, else 0 */
    capture_str base_url;       /* the platform's base URL, no trailing slash */
    capture_str order_id;
    capture_str currency;       /* ISO 4217 code */
    capture_str amount;         /* amount to capture */
    capture_str order_amount;
    capture_str surcharge;
    capture_str idempotency_key;
    capture_str description;    /* optional */
    const capture_pair *settings;
    size_t settings_len;
    const capture_raw_payment *payments;
    size_t payments_len;
    const capture_raw_shipping *shipping; /* optional (NULL: none) */
} capture_raw_capture_call;

/* 1.3: a header of a request (Header). */
typedef struct capture_raw_header {
    capture_str name;
    capture_str value;  /* the value (the prefix when `secret` is present) */
    capture_str secret; /* optional: the credential the engine appends to `value` */
} capture_raw_header;

/* 1.3: an HttpRequest, written by the plugin; every pointer into memory the plugin keeps until the
 * engine hands `owner` to free_output. */
typedef struct capture_raw_http_request {
    void *owner;        /* given back to free_output (NULL: nothing to free) */
    capture_str method; /* HTTP method */
    capture_str url;    /* absolute URL */
    capture_str body;   /* optional */
    const capture_raw_header *headers;
    size_t headers_len; /* at most 64 */
} capture_raw_http_request;

/* 1.3: an HttpResponse, filled and owned by the engine, valid during the call only. */
typedef struct capture_raw_http_response {
    uint32_t struct_size; /* sizeof as the engine was built */
    uint32_t status;      /* HTTP status (100 to 599) */
    capture_str body;
    const capture_pair *headers;
    size_t headers_len;
} capture_raw_http_response;

/* 1.3: capture_raw_capture_result.status. */
#define CAPTURE_RESULT_CAPTURED 0u
#define CAPTURE_RESULT_PENDING 1u
#define CAPTURE_RESULT_ALREADY_CAPTURED 2u
#define CAPTURE_RESULT_FAILED 3u

/* 1.3: a CaptureResult, written by the plugin; pointers as in capture_raw_http_request. The failure
 * fields are read only when `has_failure` is 1, `retry_after_ms` only when `has_retry_after` is 1.
 * Every flag is 0 or 1. */
typedef struct capture_raw_capture_result {
    void *owner;              /* given back to free_output (NULL: nothing to free) */
    uint32_t status;          /* a CAPTURE_RESULT_* code */
    uint32_t has_failure;
    uint32_t failure_kind;    /* index in FailureKind::ALL (0 to 8) */
    uint32_t retryable;       /* 1 when sending the same request again is safe */
    uint32_t has_retry_after;
    uint32_t reserved;        /* always 0 */
    uint64_t retry_after_ms;  /* when a retry may be sent */
    capture_str captured_amount;     /* optional */
    capture_str platform_capture_id; /* optional */
    capture_str platform_code;       /* optional */
    capture_str message;             /* the failure's message */
} capture_raw_capture_result;

/* 1.3: build_capture with structs. Reads *call; on CAPTURE_STATUS_OK writes *out and *context (as
 * build_capture_with: released by free_context if no parse consumes it); otherwise writes *error as
 * build_capture writes *out. */
typedef int (*capture_build_struct_fn)(const capture_raw_capture_call *call, capture_raw_http_request *out,
                                       void **context, capture_buffer *error);
/* 1.3: reads *response with the build's `context`, consumed whatever the status; on
 * CAPTURE_STATUS_OK writes *out, otherwise *error. */
typedef int (*capture_parse_struct_fn)(void *context, const capture_raw_http_response *response,
                                       capture_raw_capture_result *out, capture_buffer *error);
/* 1.3: releases what a struct answer's `owner` holds (NULL is ignored). */
typedef void (*capture_free_output_fn)(void *owner);

/* The descriptor. Fields are only ever appended, in later minors. NULL function pointers are
 * allowed only where noted. */
typedef struct capture_connector_descriptor {
    capture_descriptor_header header;
    /* ABI 1.0 */
    capture_manifest_fn manifest;   /* required: Manifest */
    capture_call_fn build_capture;  /* required: CaptureCall -> HttpRequest */
    capture_call_fn parse_capture;  /* required: ParseCall -> CaptureResult */
    capture_free_fn free_buffer;    /* required: frees every buffer written above */
    /* ABI 1.1 (NULL: no status query; then the manifest must say "status_query": false) */
    capture_call_fn build_status;   /* StatusCall -> HttpRequest */
    capture_call_fn parse_status;   /* StatusParseCall -> CaptureResult */
    /* ABI 1.2 (all three or none; NULL: build_capture and parse_capture are used) */
    capture_build_with_fn build_capture_with;   /* CaptureCall -> HttpRequest, and a context */
    capture_parse_with_fn parse_capture_with;   /* context, HttpResponse -> CaptureResult */
    capture_free_context_fn free_context;       /* releases a context no parse consumed */
    /* ABI 1.3 (all three or none, and only with the 1.2 three; NULL: the JSON functions are used) */
    capture_build_struct_fn build_capture_struct; /* call struct -> request struct, and a context */
    capture_parse_struct_fn parse_capture_struct; /* context, response struct -> result struct */
    capture_free_output_fn free_output;           /* releases a request's or a result's owner */
} capture_connector_descriptor;

/* The size of the 1.0 descriptor (up to free_buffer), of the 1.1 descriptor (up to
 * parse_status), of the 1.2 descriptor (up to free_context) and of the 1.3 descriptor. */
#define CAPTURE_DESCRIPTOR_SIZE_V1_0 offsetof(capture_connector_descriptor, build_status)
#define CAPTURE_DESCRIPTOR_SIZE_V1_1 offsetof(capture_connector_descriptor, build_capture_with)
#define CAPTURE_DESCRIPTOR_SIZE_V1_2 offsetof(capture_connector_descriptor, build_capture_struct)
#define CAPTURE_DESCRIPTOR_SIZE_V1_3 sizeof(capture_connector_descriptor)

/* The entry function's type, and the one symbol every plugin exports. */
typedef const capture_connector_descriptor *(*capture_entry_fn)(void);
const capture_connector_descriptor *capture_connector_entry(void);

/* The layout, checked at compile time: the header is 12 bytes; the function pointers follow at
 * the pointer alignment; 1.0 has 4 of them, 1.1 has 6, 1.2 has 9 and 1.3 has 12. On 64-bit
 * targets the 1.3 structs have no padding (their uint32_t fields come in even groups). */
CAPTURE_STATIC_ASSERT(sizeof(capture_descriptor_header) == 12, "descriptor header is 12 bytes");
CAPTURE_STATIC_ASSERT(offsetof(capture_descriptor_header, struct_size) == 4, "struct_size at 4");
CAPTURE_STATIC_ASSERT(offsetof(capture_descriptor_header, abi_major) == 8, "abi_major at 8");
CAPTURE_STATIC_ASSERT(offsetof(capture_descriptor_header, abi_minor) == 10, "abi_minor at 10");
CAPTURE_STATIC_ASSERT(sizeof(capture_buffer) == 3 * sizeof(size_t), "buffer is ptr, len, cap");
CAPTURE_STATIC_ASSERT(sizeof(capture_call_fn) == sizeof(size_t), "function pointers are size_t wide");
CAPTURE_STATIC_ASSERT(offsetof(capture_connector_descriptor, manifest)
                          == (sizeof(capture_call_fn) == 8 ? 16 : 12),
                      "function pointers start after the header, pointer-aligned");
CAPTURE_STATIC_ASSERT(CAPTURE_DESCRIPTOR_SIZE_V1_0
                          == offsetof(capture_connector_descriptor, manifest) + 4 * sizeof(capture_call_fn),
                      "the 1.0 descriptor has four function pointers");
CAPTURE_STATIC_ASSERT(CAPTURE_DESCRIPTOR_SIZE_V1_1
                          == offsetof(capture_connector_descriptor, manifest) + 6 * sizeof(capture_call_fn),
                      "the 1.1 descriptor has six function pointers");
CAPTURE_STATIC_ASSERT(CAPTURE_DESCRIPTOR_SIZE_V1_2
                          == offsetof(capture_connector_descriptor, manifest) + 9 * sizeof(capture_call_fn),
                      "the 1.2 descriptor has nine function pointers");
CAPTURE_STATIC_ASSERT(CAPTURE_DESCRIPTOR_SIZE_V1_3
                          == offsetof(capture_connector_descriptor, manifest) + 12 * sizeof(capture_call_fn),
                      "the 1.3 descriptor has twelve function pointers");
CAPTURE_STATIC_ASSERT(sizeof(capture_str) == 2 * sizeof(size_t), "a string is ptr, len");
CAPTURE_STATIC_ASSERT(sizeof(capture_pair) == 2 * sizeof(capture_str), "a pair is two strings");
CAPTURE_STATIC_ASSERT(sizeof(capture_raw_payment) == 4 * sizeof(capture_str), "a payment is four strings");
CAPTURE_STATIC_ASSERT(sizeof(capture_raw_shipping) == 3 * sizeof(capture_str), "shipping is three strings");
CAPTURE_STATIC_ASSERT(sizeof(capture_raw_header) == 3 * sizeof(capture_str), "a header is three strings");
CAPTURE_STATIC_ASSERT(offsetof(capture_raw_capture_call, base_url) == 16, "the call's strings follow 4 u32");
CAPTURE_STATIC_ASSERT(offsetof(capture_raw_http_response, body) == 8, "the response's body follows 2 u32");
CAPTURE_STATIC_ASSERT(offsetof(capture_raw_http_request, method) == sizeof(void *), "method follows owner");
CAPTURE_STATIC_ASSERT(offsetof(capture_raw_capture_result, status) == sizeof(void *), "status follows owner");
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
CAPTURE_STATIC_ASSERT(CAPTURE_DESCRIPTOR_SIZE_V1_0 == 48, "1.0 descriptor is 48 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(CAPTURE_DESCRIPTOR_SIZE_V1_1 == 64, "1.1 descriptor is 64 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(CAPTURE_DESCRIPTOR_SIZE_V1_2 == 88, "1.2 descriptor is 88 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(CAPTURE_DESCRIPTOR_SIZE_V1_3 == 112, "1.3 descriptor is 112 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(sizeof(capture_str) == 16, "capture_str is 16 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(sizeof(capture_pair) == 32, "capture_pair is 32 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(sizeof(capture_raw_payment) == 64, "capture_raw_payment is 64 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(sizeof(capture_raw_shipping) == 48, "capture_raw_shipping is 48 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(sizeof(capture_raw_header) == 48, "capture_raw_header is 48 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(offsetof(capture_raw_capture_call, description) == 128, "call description at 128");
CAPTURE_STATIC_ASSERT(offsetof(capture_raw_capture_call, settings) == 144, "call settings at 144");
CAPTURE_STATIC_ASSERT(offsetof(capture_raw_capture_call, shipping) == 176, "call shipping at 176");
CAPTURE_STATIC_ASSERT(sizeof(capture_raw_capture_call) == 184, "capture_raw_capture_call is 184 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(offsetof(capture_raw_http_request, headers) == 56, "request headers at 56");
CAPTURE_STATIC_ASSERT(sizeof(capture_raw_http_request) == 72, "capture_raw_http_request is 72 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(sizeof(capture_raw_http_response) == 40, "capture_raw_http_response is 40 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(offsetof(capture_raw_capture_result, retry_after_ms) == 32, "retry_after_ms at 32");
CAPTURE_STATIC_ASSERT(offsetof(capture_raw_capture_result, message) == 88, "result message at 88");
CAPTURE_STATIC_ASSERT(sizeof(capture_raw_capture_result) == 104, "capture_raw_capture_result is 104 bytes on 64-bit");
#endif

#ifdef __cplusplus
}
#endif

#endif /* CAPTURE_CONNECTOR_H */
