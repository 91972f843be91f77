// route: sets the destination (Kafka topic or ClickHouse table) from a
// field's value through a table, and the Kafka key from another field.
// Config: {"field": "kind", "routes": {"alert": "alerts"}, "default": "",
// "key": "device_id"} ("field" and "key" default as shown; "routes" is
// required). Same behaviour as plugins/examples/go/route.
import { Kind, Output, Record, Value, register } from "../../sdk/assemblyscript/assembly/index";
export * from "../../sdk/assemblyscript/assembly/abi";

let field = "kind";
let key = "device_id";
let defaultDest = "";
const routes = new Map<string, string>();

const BAD_ROUTES = 'route: config "routes" must be an object of strings';

// A string member of the config: its value, `def` when absent or null, or
// null when it is of another kind.
function configString(config: Value, name: string, def: string): string | null {
  const v = config.get(name);
  if (!v || v.kind == Kind.Null) return def;
  return v.asString();
}

function init(config: Value): string | null {
  const f = configString(config, "field", field);
  const k = configString(config, "key", key);
  const d = configString(config, "default", "");
  if (f === null) return 'route: config "field" must be a string';
  if (k === null) return 'route: config "key" must be a string';
  if (d === null) return 'route: config "default" must be a string';
  field = f;
  key = k;
  defaultDest = d;
  const table = config.get("routes");
  if (table && table.kind != Kind.Object && table.kind != Kind.Null) return BAD_ROUTES;
  if (table) {
    const members = table.members();
    for (let i = 0; i < members.length; i++) {
      const dest = members[i].value.asString();
      if (dest === null) return BAD_ROUTES;
      routes.set(members[i].name, dest); // a repeated value takes the last
    }
  }
  if (routes.size == 0) return 'route: config needs "routes", e.g. {field: kind, routes: {alarm: alarms}}';
  return null;
}

function process(r: Record, out: Output): string | null {
  const v = r.getString(field);
  if (v !== null && routes.has(v)) r.dest = routes.get(v);
  else if (defaultDest.length) r.dest = defaultDest;
  if (key.length) {
    const k = r.get(key);
    if (k && k.kind == Kind.String) {
      const s = k.asString()!;
      r.key = s;
    }
  }
  out.emit(r);
  return null;
}

register(init, process);
