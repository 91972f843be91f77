/*
 * filter: drops the records whose configured numeric field is below a
 * minimum (config {"field": "temp", "min": 0}). Records where the field is
 * missing or not a number pass. Same behaviour as plugins/examples/go/filter.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

static char *field;
static double min;

static int init(const sluice_record *config, void **state) {
	(void)state;
	sluice_str f;
	if (!sluice_get_string(config, "field", &f) || f.len == 0 || !sluice_get_number(config, "min", &min))
		return sluice_fail("filter: config needs \"field\" and \"min\", e.g. {field: temp, min: 0}");
	field = malloc(f.len + 1);
	memcpy(field, f.ptr, f.len);
	field[f.len] = 0;
	return 0;
}

static int process(sluice_record *r, sluice_output *out, void *state) {
	(void)state;
	double v;
	if (sluice_get_number(r, field, &v) && v < min)
		return 0; /* dropped: counts as delivered */
	sluice_emit(out, r);
	return 0;
}

SLUICE_TRANSFORM(init, process)
