/*
 * Test fixture: connector libraries that are wrong at load time, one way per build.
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
 */
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
#else
#define FIXTURE_BUILD_WITH NULL
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
    .parse_capture_with = NULL,
    .free_context = NULL,
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
