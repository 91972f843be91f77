/*
 * sluice.h — the Sluice transform SDK for C (ABI v1, docs/abi.md).
 *
 * A transform is two callbacks registered with SLUICE_TRANSFORM:
 *
 *   static int init(const sluice_record *config, void **state);
 *   static int process(sluice_record *r, sluice_output *out, void *state);
 *   SLUICE_TRANSFORM(init, process)
 *
 * init runs once per instance with the pipeline.yaml config (a JSON object,
 * read with the same field helpers as a record); process runs once per input
 * record. process calls sluice_emit for every output (none: the record is
 * filtered; several: it is split) and returns 0, or returns sluice_fail(...)
 * to fail the record (its outputs are then discarded).
 *
 * Memory: every sluice_str the SDK hands out (field values, unescaped
 * strings, the config) points into SDK buffers that are reused: it stays
 * valid until the callback that received it returns. Copy what init keeps.
 * Nothing here needs free().
 *
 * Build (see README.md):
 *   clang --target=wasm32-wasi -O2 -mbulk-memory -I plugins/sdk/c -c t.c plugins/sdk/c/sluice.c
 *   clang --target=wasm32-wasi -mexec-model=reactor -Wl,--strip-all -o t.wasm t.o sluice.o
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A byte string; not NUL-terminated. */
typedef struct sluice_str {
	const char *ptr;
	size_t len;
} sluice_str;

/* One Kafka-style header. */
typedef struct sluice_header {
	sluice_str name;
	sluice_str value;
} sluice_header;

/*
 * A record. value is its JSON document; key, dest and headers are as in
 * docs/abi.md (empty key/dest: "not set"). Change them with the functions
 * below; a struct copy (`sluice_record part = *r;`) is an independent record
 * that shares the unchanged bytes, which is how a split makes its parts.
 */
typedef struct sluice_record {
	sluice_str value;
	sluice_str key;
	sluice_str dest;
	uint32_t header_count;
	const sluice_header *headers;
} sluice_record;

/* The kind of a JSON value. SLUICE_MISSING: no such field. */
typedef enum sluice_kind {
	SLUICE_MISSING = 0,
	SLUICE_NULL,
	SLUICE_BOOL,
	SLUICE_NUMBER,
	SLUICE_STRING,
	SLUICE_ARRAY,
	SLUICE_OBJECT,
} sluice_kind;

typedef struct sluice_output sluice_output;

typedef int (*sluice_init_fn)(const sluice_record *config, void **state);
typedef int (*sluice_process_fn)(sluice_record *r, sluice_output *out, void *state);

/* Registers the transform; SLUICE_TRANSFORM calls it from a constructor. */
void sluice_register(sluice_init_fn init, sluice_process_fn process);

#define SLUICE_TRANSFORM(init_fn, process_fn)                                 \
	__attribute__((constructor)) static void sluice_register_transform_(void) { \
		sluice_register((init_fn), (process_fn));                               \
	}

/* ---- Top-level fields of a record's (or the config's) JSON object ----
 * Names are matched against the decoded key; the first member with that
 * name wins. A value that is not a JSON object has no fields. */

/* Returns the field's kind and, when raw is not NULL, its raw JSON text. */
sluice_kind sluice_get(const sluice_record *r, const char *name, sluice_str *raw);
/* Returns true when the field is a JSON number, storing it in *out. */
bool sluice_get_number(const sluice_record *r, const char *name, double *out);
/* Returns true when the field is a JSON string, storing its decoded UTF-8. */
bool sluice_get_string(const sluice_record *r, const char *name, sluice_str *out);
/* Returns true when the field is true or false, storing it in *out. */
bool sluice_get_bool(const sluice_record *r, const char *name, bool *out);

/* Setters replace the field's value in place when present, else append the
 * field at the end of the object. They return 0, or -1 when the value is not
 * a JSON object (or the number is not finite); sluice_fail has then been
 * called with the reason, so `return -1` fails the record with it. */
int sluice_set_raw(sluice_record *r, const char *name, const char *json, size_t len);
int sluice_set_string(sluice_record *r, const char *name, const char *s, size_t len);
int sluice_set_cstring(sluice_record *r, const char *name, const char *s);
int sluice_set_number(sluice_record *r, const char *name, double v);
int sluice_set_bool(sluice_record *r, const char *name, bool v);
/* Removes the field; returns 1 when it was there, 0 when not, -1 (with
 * sluice_fail called) when the value is not an object. */
int sluice_delete(sluice_record *r, const char *name);

void sluice_set_key(sluice_record *r, const char *key, size_t len);
void sluice_set_dest(sluice_record *r, const char *dest, size_t len);

/* ---- Headers (Kafka message headers; docs/abi.md) ----
 * r->headers[0 .. r->header_count) are the record's headers, in order; a
 * name may repeat. These helpers match names byte for byte. The setters
 * never write to the array they find: they make a new one in scratch
 * memory, so a struct copy made before (a split's part) keeps its own. */

/* Returns true when r has a header called name, storing the value of the
 * first one in *value (when value is not NULL). */
bool sluice_get_header(const sluice_record *r, const char *name, sluice_str *value);
/* Sets the first header called name to a copy of value (len bytes), adding
 * it at the end when there is none. */
void sluice_set_header(sluice_record *r, const char *name, const char *value, size_t len);
/* The same with a NUL-terminated value. */
void sluice_set_header_cstring(sluice_record *r, const char *name, const char *value);
/* Removes every header called name; returns 1 when there was one, else 0. */
int sluice_delete_header(sluice_record *r, const char *name);

/* ---- Raw JSON values (for nested objects, arrays, config maps) ---- */

/* Looks up a member of the JSON object text obj by name (name_len bytes). */
sluice_kind sluice_lookup(sluice_str obj, const char *name, size_t name_len, sluice_str *raw);
/* The kind of one raw JSON value. */
sluice_kind sluice_kind_of(sluice_str raw);
/* Decodes a raw JSON number (correctly rounded; a number too large for a
 * double is not one) or string; false when raw is not one. */
bool sluice_number(sluice_str raw, double *out);
bool sluice_string(sluice_str raw, sluice_str *out);

/* Iterates the elements of a JSON array:
 *   sluice_iter it; sluice_str el;
 *   for (sluice_array(raw, &it); sluice_next(&it, &el);) ... */
typedef struct sluice_iter {
	const char *p, *end;
} sluice_iter;
bool sluice_array(sluice_str raw, sluice_iter *it);
bool sluice_next(sluice_iter *it, sluice_str *elem);
/* Iterates the members of a JSON object, in document order; names are
 * decoded (valid until the callback returns):
 *   sluice_iter it; sluice_str name, val;
 *   for (sluice_object(raw, &it); sluice_next_member(&it, &name, &val);) ... */
bool sluice_object(sluice_str raw, sluice_iter *it);
bool sluice_next_member(sluice_iter *it, sluice_str *name, sluice_str *value);

/* Writes v as JSON, as Go's encoding/json does: the shortest text that reads
 * back as v (the nearer of two, a tie to the even digit), in exponent form
 * from 1e21 up and below 1e-6 (1e+21, 2.5e-7), "-0" for negative zero. buf
 * needs 32 bytes; returns the length, or 0 when v is not finite. */
size_t sluice_format_number(double v, char *buf);

/* ---- Outputs and errors ---- */

/* Emits r as an output of the current input record. */
void sluice_emit(sluice_output *out, const sluice_record *r);
/* Records the reason the current record (or the config) failed and returns
 * -1, for `return sluice_fail("bad %s", x);`. */
int sluice_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes a message to Sluice's log (level 0 debug, 1 info, 2 warn, 3 error). */
void sluice_log(int level, const char *msg, size_t len);

/* Scratch memory valid until the current callback returns. */
void *sluice_scratch(size_t n);

#ifdef __cplusplus
}
#endif
#endif
