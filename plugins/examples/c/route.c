/*
 * route: sets the destination (Kafka topic or ClickHouse table) from a
 * field's value through a table, and the Kafka key from another field.
 * Config: {"field": "kind", "routes": {"alert": "alerts"}, "default": "",
 * "key": "device_id"} ("field" and "key" default as shown; "routes" is
 * required). Same behaviour as plugins/examples/go/route.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

typedef struct route {
	sluice_str value, dest; /* owned copies */
} route;

static route *routes;
static size_t nroutes;
static char *field = "kind";
static char *key = "device_id";
static sluice_str default_dest;

static sluice_str dup_str(sluice_str s) {
	char *p = malloc(s.len + 1);
	memcpy(p, s.ptr, s.len);
	p[s.len] = 0;
	return (sluice_str){p, s.len};
}

/* A string member of the config: 1 when set, 0 when absent or null, -1 when
 * of another kind. */
static int config_string(const sluice_record *config, const char *name, sluice_str *out) {
	sluice_str raw;
	sluice_kind k = sluice_get(config, name, &raw);
	if (k == SLUICE_MISSING || k == SLUICE_NULL)
		return 0;
	if (k != SLUICE_STRING)
		return sluice_fail("route: config \"%s\" must be a string", name);
	sluice_string(raw, out);
	*out = dup_str(*out);
	return 1;
}

static int init(const sluice_record *config, void **state) {
	(void)state;
	sluice_str s;
	int rc;
	if ((rc = config_string(config, "field", &s)) < 0)
		return rc;
	if (rc)
		field = (char *)s.ptr;
	if ((rc = config_string(config, "key", &s)) < 0)
		return rc;
	if (rc)
		key = (char *)s.ptr;
	if ((rc = config_string(config, "default", &default_dest)) < 0)
		return rc;
	sluice_str table;
	sluice_kind k = sluice_get(config, "routes", &table);
	if (k != SLUICE_OBJECT && k != SLUICE_MISSING && k != SLUICE_NULL)
		return sluice_fail("route: config \"routes\" must be an object of strings");
	sluice_iter it;
	sluice_str name, val, dest;
	for (sluice_object(table, &it); sluice_next_member(&it, &name, &val);) {
		if (!sluice_string(val, &dest))
			return sluice_fail("route: config \"routes\" must be an object of strings");
		size_t i = 0;
		while (i < nroutes && !(routes[i].value.len == name.len && memcmp(routes[i].value.ptr, name.ptr, name.len) == 0))
			i++;
		if (i == nroutes) { /* a repeated value takes the last destination */
			routes = realloc(routes, (nroutes + 1) * sizeof *routes);
			routes[nroutes++].value = dup_str(name);
		}
		routes[i].dest = dup_str(dest);
	}
	if (!nroutes)
		return sluice_fail("route: config needs \"routes\", e.g. {field: kind, routes: {alarm: alarms}}");
	return 0;
}

static int process(sluice_record *r, sluice_output *out, void *state) {
	(void)state;
	sluice_str v;
	const route *hit = NULL;
	if (sluice_get_string(r, field, &v))
		for (size_t i = 0; i < nroutes && !hit; i++)
			if (routes[i].value.len == v.len && memcmp(routes[i].value.ptr, v.ptr, v.len) == 0)
				hit = &routes[i];
	if (hit)
		sluice_set_dest(r, hit->dest.ptr, hit->dest.len);
	else if (default_dest.len)
		sluice_set_dest(r, default_dest.ptr, default_dest.len);
	if (*key && sluice_get_string(r, key, &v))
		sluice_set_key(r, v.ptr, v.len);
	sluice_emit(out, r);
	return 0;
}

SLUICE_TRANSFORM(init, process)
