/*
 * enrich: sets every field of its config on each record (config
 * {"site": "lab-1"} sets "site"), and gives a record with a numeric "temp"
 * (°C) a "temp_f" (°F). Same behaviour as plugins/examples/go/enrich.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

typedef struct field {
	char *name; /* NUL-terminated */
	char *raw;  /* the config's JSON for the value */
	size_t raw_len;
} field;

static field *fields;
static size_t nfields;

/* A NUL-terminated copy: the config's bytes are gone after init. */
static char *copy(sluice_str s) {
	char *p = malloc(s.len + 1);
	memcpy(p, s.ptr, s.len);
	p[s.len] = 0;
	return p;
}

static int init(const sluice_record *config, void **state) {
	(void)state;
	sluice_iter it;
	sluice_str name, raw;
	for (sluice_object(config->value, &it); sluice_next_member(&it, &name, &raw);) {
		fields = realloc(fields, (nfields + 1) * sizeof *fields);
		fields[nfields++] = (field){copy(name), copy(raw), raw.len};
	}
	return 0;
}

static int process(sluice_record *r, sluice_output *out, void *state) {
	(void)state;
	for (size_t i = 0; i < nfields; i++)
		if (sluice_set_raw(r, fields[i].name, fields[i].raw, fields[i].raw_len))
			return -1;
	double t;
	if (sluice_get_number(r, "temp", &t) && sluice_set_number(r, "temp_f", t * 9 / 5 + 32))
		return -1;
	sluice_emit(out, r);
	return 0;
}

SLUICE_TRANSFORM(init, process)
