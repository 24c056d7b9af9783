/*
 * capture_connector.h: the capture engine's connector ABI, version 1.2, for plugins written in C
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
#define CAPTURE_ABI_MINOR 2
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
} capture_connector_descriptor;

/* The size of the 1.0 descriptor (up to free_buffer), of the 1.1 descriptor (up to
 * parse_status) and of the 1.2 descriptor. */
#define CAPTURE_DESCRIPTOR_SIZE_V1_0 offsetof(capture_connector_descriptor, build_status)
#define CAPTURE_DESCRIPTOR_SIZE_V1_1 offsetof(capture_connector_descriptor, build_capture_with)
#define CAPTURE_DESCRIPTOR_SIZE_V1_2 sizeof(capture_connector_descriptor)

/* The entry function's type, and the one symbol every plugin exports. */
typedef const capture_connector_descriptor *(*capture_entry_fn)(void);
const capture_connector_descriptor *capture_connector_entry(void);

/* The layout, checked at compile time: the header is 12 bytes; the function pointers follow at
 * the pointer alignment; 1.0 has 4 of them, 1.1 has 6 and 1.2 has 9. */
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
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
CAPTURE_STATIC_ASSERT(CAPTURE_DESCRIPTOR_SIZE_V1_0 == 48, "1.0 descriptor is 48 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(CAPTURE_DESCRIPTOR_SIZE_V1_1 == 64, "1.1 descriptor is 64 bytes on 64-bit");
CAPTURE_STATIC_ASSERT(CAPTURE_DESCRIPTOR_SIZE_V1_2 == 88, "1.2 descriptor is 88 bytes on 64-bit");
#endif

#ifdef __cplusplus
}
#endif

#endif /* CAPTURE_CONNECTOR_H */
