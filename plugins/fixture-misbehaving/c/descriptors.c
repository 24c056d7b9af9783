/*
 * Test fixture: connector libraries that are wrong at load time (or, the FIXTURE_STRUCT_* ones at
 * the end of the list, in the struct messages they answer), one way per build.
 *
 * A library has one entry symbol and is never unloaded, so every descriptor variant is its own
 * library: the e2e tests (tests/e2e/abi.rs) compile this file once per variant with the system C
 * compiler, against examples/c-connector/capture_connector.h, choosing the fault with a -D flag:
 *
 *   cc -shared -fPIC -I examples/c-connector -DFIXTURE_BAD_MAGIC -o libbad_magic.so descriptors.c
 *
 * Without a flag it is a valid (if useless: it refuses every call) connector, so that every failure
 * a test sees comes from the one fault it asked for.
 *
 *   FIXTURE_NO_ENTRY                   no capture_connector_entry symbol at all
 *   FIXTURE_ENTRY_DATA                 capture_connector_entry is a data object, not a function
 *   FIXTURE_NULL_DESCRIPTOR            the entry function returns NULL
 *   FIXTURE_BAD_MAGIC                  the header's magic is not "CAPT"
 *   FIXTURE_MINOR_NEXT                 ABI 1.(host minor + 1): newer than the host
 *   FIXTURE_MINOR_1_1                  a valid ABI 1.1 descriptor (struct_size ends at parse_status;
 *                                      the 1.2 fields after it hold a function that aborts)
 *   FIXTURE_CONTEXT_PARTIAL            build_capture_with set, parse_capture_with and free_context NULL
 *   FIXTURE_TOO_SMALL                  struct_size smaller than the 1.0 descriptor
 *   FIXTURE_NULL_FUNCTION              parse_capture is NULL
 *   FIXTURE_MANIFEST_NULL_BUFFER       the manifest function succeeds without writing its buffer
 *   FIXTURE_MANIFEST_UNKNOWN_FIELD     the manifest has a field the schema does not know
 *   FIXTURE_MANIFEST_BAD_CREDENTIAL    a credential name that is not [a-z0-9_]+
 *   FIXTURE_MANIFEST_BAD_HOST          an allowed host that is a URL, not a host pattern
 *   FIXTURE_MANIFEST_BAD_VERSION       a version that is not semantic
 *   FIXTURE_MANIFEST_STATUS_WITHOUT_FUNCTIONS  status_query true with NULL status functions
 *   FIXTURE_MINOR_1_2                  a valid ABI 1.2 descriptor (struct_size ends at free_context;
 *                                      the 1.3 fields after it hold functions that abort)
 *   FIXTURE_STRUCT_PARTIAL             build_capture_struct set, parse_capture_struct and free_output NULL
 *   FIXTURE_STRUCT_WITHOUT_CONTEXT     the 1.3 struct functions set, the 1.2 context functions NULL
 *
 * Struct messages that are wrong at call time (ABI 1.3, with the 1.2 context functions): the
 * library loads, and build_capture_struct returns CAPTURE_STATUS_OK with
 *
 *   FIXTURE_STRUCT_URL_NOT_UTF8        a url that is not UTF-8
 *   FIXTURE_STRUCT_NULL_WITH_LENGTH    headers[0].name with a NULL pointer and length 3
 *   FIXTURE_STRUCT_TOO_MANY_HEADERS    65 headers (the engine takes at most 64)
 *   FIXTURE_STRUCT_SLOW                a valid request (as below), built after sleeping 400 ms
 *   FIXTURE_STRUCT_BAD_RESULT_STATUS   a valid request (POST http://127.0.0.1:9/x), and then
 *                                      parse_capture_struct returns a result with status code 7
 *
 * Each of those counts, in exported globals the tests read with dlsym, the struct answers it made
 * (fixture_outputs_made) and the ones free_output got back (fixture_outputs_freed), and the contexts
 * it made (fixture_contexts_made) and got back, through free_context or consumed by a parse
 * (fixture_contexts_freed); fixture_bad_frees counts what came back that was not alive (a second
 * free): the engine must hand every one back exactly once.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "capture_connector.h"

#define CAPS_NO_STATUS                                                                                   \
    "{\"partial_capture\":\"always\",\"multiple_payments_per_call\":false,\"asynchronous\":false,"      \
    "\"amount_encoding\":\"decimal_string\",\"max_currency_exponent\":3,\"idempotency_key\":true,"     \
    "\"status_query\":false}"
#define CAPS_STATUS                                                                                      \
    "{\"partial_capture\":\"always\",\"multiple_payments_per_call\":false,\"asynchronous\":false,"      \
    "\"amount_encoding\":\"decimal_string\",\"max_currency_exponent\":3,\"idempotency_key\":true,"     \
    "\"status_query\":true}"

#define MANIFEST(version, caps, hosts, credentials, extra)                                               \
    "{\"id\":\"descriptor_fixture\",\"name\":\"Descriptor fixture\",\"version\":\"" version "\","       \
    "\"schema\":1,\"capabilities\":" caps ",\"allowed_hosts\":[" hosts "],\"credentials\":[" credentials \
    "],\"settings\":[]" extra "}"

#if defined(FIXTURE_MANIFEST_UNKNOWN_FIELD)
static const char MANIFEST_JSON[] =
    MANIFEST("0.1.0", CAPS_NO_STATUS, "\"api.example.com\"", "\"token\"", ",\"homepage\":\"https://example.com\"");
#elif defined(FIXTURE_MANIFEST_BAD_CREDENTIAL)
static const char MANIFEST_JSON[] = MANIFEST("0.1.0", CAPS_NO_STATUS, "\"api.example.com\"", "\"Bearer-Token\"", "");
#elif defined(FIXTURE_MANIFEST_BAD_HOST)
static const char MANIFEST_JSON[] =
    MANIFEST("0.1.0", CAPS_NO_STATUS, "\"https://api.example.com/v1\"", "\"token\"", "");
#elif defined(FIXTURE_MANIFEST_BAD_VERSION)
static const char MANIFEST_JSON[] = MANIFEST("latest", CAPS_NO_STATUS, "\"api.example.com\"", "\"token\"", "");
#elif defined(FIXTURE_MANIFEST_STATUS_WITHOUT_FUNCTIONS)
static const char MANIFEST_JSON[] = MANIFEST("0.1.0", CAPS_STATUS, "\"api.example.com\"", "\"token\"", "");
#else
static const char MANIFEST_JSON[] = MANIFEST("0.1.0", CAPS_NO_STATUS, "\"api.example.com\"", "\"token\"", "");
#endif

static int write_text(capture_buffer *out, const char *text) {
    size_t n = strlen(text);
    uint8_t *p = malloc(n);
    if (!p) return CAPTURE_STATUS_ERROR;
    memcpy(p, text, n);
    out->ptr = p;
    out->len = n;
    out->cap = n;
    return 0;
}

static int fixture_manifest(capture_buffer *out) {
#if defined(FIXTURE_MANIFEST_NULL_BUFFER)
    (void)out;
    (void)MANIFEST_JSON;
    return CAPTURE_STATUS_OK;
#else
    return write_text(out, MANIFEST_JSON) == 0 ? CAPTURE_STATUS_OK : CAPTURE_STATUS_ERROR;
#endif
}

static int refuse_every_call(const uint8_t *input, size_t len, capture_buffer *out) {
    (void)input;
    (void)len;
    write_text(out, "{\"code\":\"unsupported\",\"message\":\"the descriptor fixture refuses every call\"}");
    return CAPTURE_STATUS_ERROR;
}

static void fixture_free(capture_buffer buf) { free(buf.ptr); }

#if defined(FIXTURE_BAD_MAGIC)
#define FIXTURE_MAGIC 0xDEADBEEFu
#else
#define FIXTURE_MAGIC CAPTURE_MAGIC
#endif

#if defined(FIXTURE_MINOR_NEXT)
#define FIXTURE_MINOR (CAPTURE_ABI_MINOR + 1)
/* A newer minor appends fields: the descriptor it declares is larger than this header's. */
#define FIXTURE_SIZE (sizeof(capture_connector_descriptor) + sizeof(capture_call_fn))
#elif defined(FIXTURE_MINOR_1_1)
/* A 1.1 plugin: the descriptor ends at parse_status, whatever follows it in memory. */
#define FIXTURE_MINOR 1
#define FIXTURE_SIZE CAPTURE_DESCRIPTOR_SIZE_V1_1
#elif defined(FIXTURE_MINOR_1_2)
/* A 1.2 plugin: the descriptor ends at free_context, whatever follows it in memory. */
#define FIXTURE_MINOR 2
#define FIXTURE_SIZE CAPTURE_DESCRIPTOR_SIZE_V1_2
#else
#define FIXTURE_MINOR CAPTURE_ABI_MINOR
#endif

#if defined(FIXTURE_TOO_SMALL)
#undef FIXTURE_SIZE
#define FIXTURE_SIZE 8
#endif
#ifndef FIXTURE_SIZE
#define FIXTURE_SIZE sizeof(capture_connector_descriptor)
#endif

#if defined(FIXTURE_NULL_FUNCTION)
#define FIXTURE_PARSE NULL
#else
#define FIXTURE_PARSE refuse_every_call
#endif

#if defined(FIXTURE_MINOR_1_1) || defined(FIXTURE_CONTEXT_PARTIAL)
/* Never called: a 1.1 descriptor's host reads nothing past parse_status, and a partial context
 * is refused at load. */
static int build_with_must_not_be_called(const uint8_t *input, size_t len, capture_buffer *out, void **context) {
    (void)input;
    (void)len;
    (void)out;
    (void)context;
    abort();
}
#define FIXTURE_BUILD_WITH build_with_must_not_be_called
#endif

#if defined(FIXTURE_MINOR_1_2) || defined(FIXTURE_STRUCT_PARTIAL) || defined(FIXTURE_STRUCT_WITHOUT_CONTEXT)
/* Never called: a 1.2 descriptor's host reads nothing past free_context, and a partial or
 * context-less struct trio is refused at load. */
static int build_struct_must_not_be_called(const capture_raw_capture_call *call, capture_raw_http_request *out,
                                           void **context, capture_buffer *error) {
    (void)call;
    (void)out;
    (void)context;
    (void)error;
    abort();
}
#if !defined(FIXTURE_STRUCT_PARTIAL)
static int parse_struct_must_not_be_called(void *context, const capture_raw_http_response *response,
                                           capture_raw_capture_result *out, capture_buffer *error) {
    (void)context;
    (void)response;
    (void)out;
    (void)error;
    abort();
}
static void free_output_must_not_be_called(void *owner) {
    (void)owner;
    abort();
}
#define FIXTURE_PARSE_STRUCT parse_struct_must_not_be_called
#define FIXTURE_FREE_OUTPUT free_output_must_not_be_called
#endif
#define FIXTURE_BUILD_STRUCT build_struct_must_not_be_called
#endif

#if defined(FIXTURE_STRUCT_URL_NOT_UTF8) || defined(FIXTURE_STRUCT_NULL_WITH_LENGTH)                      \
    || defined(FIXTURE_STRUCT_TOO_MANY_HEADERS) || defined(FIXTURE_STRUCT_BAD_RESULT_STATUS)          \
    || defined(FIXTURE_STRUCT_SLOW)
#define FIXTURE_STRUCT_RUNTIME
#endif

#if defined(FIXTURE_STRUCT_SLOW)
#include <threads.h>
#endif

#if defined(FIXTURE_STRUCT_RUNTIME)
/* What the tests read (dlsym): every answer's owner and every context made, and given back; and
 * what came back that was not alive (a second free, or a pointer this plugin never made). */
atomic_uint fixture_outputs_made;
atomic_uint fixture_outputs_freed;
atomic_uint fixture_contexts_made;
atomic_uint fixture_contexts_freed;
atomic_uint fixture_bad_frees;

#define FIXTURE_HEADERS 65
#define ALIVE 0x414c4956u /* "ALIV" */
#define DEAD 0x44454144u  /* "DEAD" */

/* The memory a struct answer points into, kept until free_output. */
typedef struct fixture_output {
    unsigned state; /* ALIVE, then DEAD */
    capture_raw_header headers[FIXTURE_HEADERS];
    uint8_t url[32];
} fixture_output;

/* A context: only its state. */
typedef struct fixture_context {
    unsigned state; /* ALIVE, then DEAD */
} fixture_context;

/* Given back: marked dead, never returned to malloc (a test makes a few), so that a second
 * free_output or free_context is counted, not undefined. */
static void give_back(unsigned *state, atomic_uint *freed) {
    if (*state == ALIVE) {
        *state = DEAD;
        atomic_fetch_add(freed, 1);
    } else {
        atomic_fetch_add(&fixture_bad_frees, 1);
    }
}

static capture_str str_of(const char *text) {
    capture_str s = {(const uint8_t *)text, strlen(text)};
    return s;
}

static fixture_output *new_output(void) {
    fixture_output *o = calloc(1, sizeof *o);
    if (o) {
        o->state = ALIVE;
        atomic_fetch_add(&fixture_outputs_made, 1);
    }
    return o;
}

static void fixture_free_output(void *owner) {
    if (owner) give_back(&((fixture_output *)owner)->state, &fixture_outputs_freed);
}

static void fixture_free_context(void *context) {
    if (context) give_back(&((fixture_context *)context)->state, &fixture_contexts_freed);
}

static int out_of_memory(capture_buffer *error) {
    write_text(error, "out of memory");
    return CAPTURE_STATUS_PANIC;
}

static int fixture_build_struct(const capture_raw_capture_call *call, capture_raw_http_request *out,
                                void **context, capture_buffer *error) {
    if (!call || call->struct_size < sizeof *call) {
        write_text(error, "{\"code\":\"invalid_call\",\"message\":\"no call struct, or a short one\"}");
        return CAPTURE_STATUS_ERROR;
    }
#if defined(FIXTURE_STRUCT_SLOW)
    /* Past the caller's deadline (the test's is 100 ms), then a valid answer nobody waits for. */
    thrd_sleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 400000000}, NULL);
#endif
    fixture_output *o = new_output();
    if (!o) return out_of_memory(error);
    fixture_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        fixture_free_output(o);
        return out_of_memory(error);
    }
    ctx->state = ALIVE;
    atomic_fetch_add(&fixture_contexts_made, 1);

    static const char URL[] = "http://127.0.0.1:9/x";
    memcpy(o->url, URL, sizeof URL - 1);
    out->owner = o;
    out->method = str_of("POST");
    out->url.ptr = o->url;
    out->url.len = sizeof URL - 1;
    out->body.ptr = NULL; /* absent */
    out->body.len = 0;
    out->headers = o->headers;
    out->headers_len = 1;
    o->headers[0].name = str_of("Content-Type");
    o->headers[0].value = str_of("application/json");
    o->headers[0].secret.ptr = NULL; /* absent */
    o->headers[0].secret.len = 0;
#if defined(FIXTURE_STRUCT_URL_NOT_UTF8)
    o->url[out->url.len - 1] = 0xff; /* "http://127.0.0.1:9/\xff" */
#elif defined(FIXTURE_STRUCT_NULL_WITH_LENGTH)
    o->headers[0].name.ptr = NULL;
    o->headers[0].name.len = 3;
#elif defined(FIXTURE_STRUCT_TOO_MANY_HEADERS)
    for (size_t i = 1; i < FIXTURE_HEADERS; i++) o->headers[i] = o->headers[0];
    out->headers_len = FIXTURE_HEADERS;
#endif
    *context = ctx;
    return CAPTURE_STATUS_OK;
}

static int fixture_parse_struct(void *context, const capture_raw_http_response *response,
                                capture_raw_capture_result *out, capture_buffer *error) {
    fixture_free_context(context); /* consumed, whatever the status */
    if (!response || response->struct_size < sizeof *response) {
        write_text(error, "{\"code\":\"invalid_call\",\"message\":\"no response struct, or a short one\"}");
        return CAPTURE_STATUS_ERROR;
    }
    fixture_output *o = new_output();
    if (!o) return out_of_memory(error);
    memset(out, 0, sizeof *out);
    out->owner = o;
    out->status = 7; /* no CAPTURE_RESULT_* code */
    out->message = str_of("the fixture answers a status that does not exist");
    return CAPTURE_STATUS_OK;
}

/* The 1.2 functions a struct plugin must have; the engine uses the struct ones instead. */
static int build_with_refuses(const uint8_t *input, size_t len, capture_buffer *out, void **context) {
    (void)context;
    return refuse_every_call(input, len, out);
}
static int parse_with_refuses(void *context, const uint8_t *input, size_t len, capture_buffer *out) {
    fixture_free_context(context);
    return refuse_every_call(input, len, out);
}

#define FIXTURE_BUILD_WITH build_with_refuses
#define FIXTURE_PARSE_WITH parse_with_refuses
#define FIXTURE_FREE_CONTEXT fixture_free_context
#define FIXTURE_BUILD_STRUCT fixture_build_struct
#define FIXTURE_PARSE_STRUCT fixture_parse_struct
#define FIXTURE_FREE_OUTPUT fixture_free_output
#endif

#ifndef FIXTURE_BUILD_WITH
#define FIXTURE_BUILD_WITH NULL
#endif
#ifndef FIXTURE_PARSE_WITH
#define FIXTURE_PARSE_WITH NULL
#endif
#ifndef FIXTURE_FREE_CONTEXT
#define FIXTURE_FREE_CONTEXT NULL
#endif
#ifndef FIXTURE_BUILD_STRUCT
#define FIXTURE_BUILD_STRUCT NULL
#endif
#ifndef FIXTURE_PARSE_STRUCT
#define FIXTURE_PARSE_STRUCT NULL
#endif
#ifndef FIXTURE_FREE_OUTPUT
#define FIXTURE_FREE_OUTPUT NULL
#endif

static const capture_connector_descriptor DESCRIPTOR = {
    .header = {FIXTURE_MAGIC, (uint32_t)FIXTURE_SIZE, CAPTURE_ABI_MAJOR, FIXTURE_MINOR},
    .manifest = fixture_manifest,
    .build_capture = refuse_every_call,
    .parse_capture = FIXTURE_PARSE,
    .free_buffer = fixture_free,
    .build_status = NULL,
    .parse_status = NULL,
    .build_capture_with = FIXTURE_BUILD_WITH,
    .parse_capture_with = FIXTURE_PARSE_WITH,
    .free_context = FIXTURE_FREE_CONTEXT,
    .build_capture_struct = FIXTURE_BUILD_STRUCT,
    .parse_capture_struct = FIXTURE_PARSE_STRUCT,
    .free_output = FIXTURE_FREE_OUTPUT,
};

#if defined(FIXTURE_ENTRY_DATA)
/* The entry's name on data (an assembler name: the header declares the function): called as a
 * function, it would crash the host. */
__attribute__((used, visibility("default"))) const unsigned char entry_as_data[64] __asm__(
    "capture_connector_entry") = {0xff, 0xff, 0xff, 0xff};
const capture_connector_descriptor *capture_connector_entry_v2(void) { return &DESCRIPTOR; }
#elif !defined(FIXTURE_NO_ENTRY)
const capture_connector_descriptor *capture_connector_entry(void) {
#if defined(FIXTURE_NULL_DESCRIPTOR)
    (void)&DESCRIPTOR;
    return NULL;
#else
    return &DESCRIPTOR;
#endif
}
#else
/* Something must be exported, or the library would be empty: a function with another name. */
const capture_connector_descriptor *capture_connector_entry_v2(void) { return &DESCRIPTOR; }
#endif
