/*
 * split: splits a record with an array field into one record per element:
 * {"d":1,"readings":[a,b]} becomes {"d":1,"reading":a} and
 * {"d":1,"reading":b}. An empty array drops the record; a record without
 * the array passes unchanged. Config (optional): {"field": "readings",
 * "as": "reading"}. Same behaviour as plugins/examples/go/split.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

static char *from = "readings";
static char *to = "reading";

static char *config_string(const sluice_record *config, const char *name, char *def) {
	sluice_str s;
	if (!sluice_get_string(config, name, &s))
		return def;
	char *p = malloc(s.len + 1);
	memcpy(p, s.ptr, s.len);
	p[s.len] = 0;
	return p;
}

static int init(const sluice_record *config, void **state) {
	(void)state;
	from = config_string(config, "field", from);
	to = config_string(config, "as", to);
	return 0;
}

static int process(sluice_record *r, sluice_output *out, void *state) {
	(void)state;
	sluice_str arr;
	if (sluice_get(r, from, &arr) != SLUICE_ARRAY) {
		sluice_emit(out, r);
		return 0;
	}
	/* arr points into the input batch and stays valid while r is edited. */
	if (sluice_delete(r, from) < 0)
		return -1;
	sluice_iter it;
	sluice_str el;
	for (sluice_array(arr, &it); sluice_next(&it, &el);) {
		if (sluice_set_raw(r, to, el.ptr, el.len))
			return -1;
		sluice_emit(out, r);
	}
	return 0;
}

SLUICE_TRANSFORM(init, process)
