/*
 * headers: moves data between a record's fields and its Kafka headers.
 * Config (every member optional):
 *   {"lift": {"trace-id": "trace_id"},  header -> field: the first header's
 *                                        value becomes a string field
 *    "tag":  {"event-type": "kind"},    field -> header: a string field's
 *                                        value sets the first header of
 *                                        that name, or adds one
 *    "drop": ["x-debug"]}               headers removed, every one of a name
 * applied in that order (lift, tag, drop), each in the config's order. A
 * record that is not a JSON object fails when a header is lifted into it.
 * Same behaviour as the Rust and AssemblyScript headers examples (and the
 * Go reference in plugins/examples/go/headers).
 */
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

typedef struct pair {
	char *header, *field; /* NUL-terminated copies */
} pair;

static pair *lift, *tag;
static size_t nlift, ntag;
static char **drop;
static size_t ndrop;

static char *copy(sluice_str s) {
	char *p = malloc(s.len + 1);
	memcpy(p, s.ptr, s.len);
	p[s.len] = 0;
	return p;
}

/* Reads the config member name, an object of strings, into *pairs. */
static int config_pairs(const sluice_record *config, const char *name, pair **pairs, size_t *n) {
	sluice_str obj;
	sluice_kind k = sluice_get(config, name, &obj);
	if (k == SLUICE_MISSING || k == SLUICE_NULL)
		return 0;
	if (k != SLUICE_OBJECT)
		return sluice_fail("headers: config \"%s\" must be an object of strings", name);
	sluice_iter it;
	sluice_str header, raw, field;
	for (sluice_object(obj, &it); sluice_next_member(&it, &header, &raw);) {
		if (!sluice_string(raw, &field))
			return sluice_fail("headers: config \"%s\" must be an object of strings", name);
		*pairs = realloc(*pairs, (*n + 1) * sizeof **pairs);
		(*pairs)[(*n)++] = (pair){copy(header), copy(field)};
	}
	return 0;
}

static int init(const sluice_record *config, void **state) {
	(void)state;
	if (config_pairs(config, "lift", &lift, &nlift) || config_pairs(config, "tag", &tag, &ntag))
		return -1;
	sluice_str arr, el, name;
	sluice_kind k = sluice_get(config, "drop", &arr);
	if (k == SLUICE_MISSING || k == SLUICE_NULL)
		return 0;
	if (k != SLUICE_ARRAY)
		return sluice_fail("headers: config \"drop\" must be an array of strings");
	sluice_iter it;
	for (sluice_array(arr, &it); sluice_next(&it, &el);) {
		if (!sluice_string(el, &name))
			return sluice_fail("headers: config \"drop\" must be an array of strings");
		drop = realloc(drop, (ndrop + 1) * sizeof *drop);
		drop[ndrop++] = copy(name);
	}
	return 0;
}

static int process(sluice_record *r, sluice_output *out, void *state) {
	(void)state;
	sluice_str v;
	for (size_t i = 0; i < nlift; i++)
		if (sluice_get_header(r, lift[i].header, &v) && sluice_set_string(r, lift[i].field, v.ptr, v.len))
			return -1;
	for (size_t i = 0; i < ntag; i++)
		if (sluice_get_string(r, tag[i].field, &v))
			sluice_set_header(r, tag[i].header, v.ptr, v.len);
	for (size_t i = 0; i < ndrop; i++)
		sluice_delete_header(r, drop[i]);
	sluice_emit(out, r);
	return 0;
}

SLUICE_TRANSFORM(init, process)
