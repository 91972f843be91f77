/* identity: returns every record unchanged; measures the cost of the ABI. */
#include "sluice.h"

static int process(sluice_record *r, sluice_output *out, void *state) {
	(void)state;
	sluice_emit(out, r);
	return 0;
}

SLUICE_TRANSFORM(NULL, process)
