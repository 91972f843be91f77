// headers: moves data between a record's fields and its Kafka headers.
// Config (every member optional):
//   {"lift": {"trace-id": "trace_id"},  header -> field: the first header's
//                                        value becomes a string field
//    "tag":  {"event-type": "kind"},    field -> header: a string field's
//                                        value sets the first header of
//                                        that name, or adds one
//    "drop": ["x-debug"]}               headers removed, every one of a name
// applied in that order (lift, tag, drop), each in the config's order. A
// record that is not a JSON object fails when a header is lifted into it.
// Same behaviour as the C and Rust headers examples (and the Go reference in
// plugins/examples/go/headers).
import { Kind, Output, Record, Value, register } from "../../sdk/assemblyscript/assembly/index";
export * from "../../sdk/assemblyscript/assembly/abi";

class Pair {
  constructor(public header: string, public field: string) {}
}

let lift: Pair[] = [];
let tag: Pair[] = [];
const drop: string[] = [];

// The config member name, an object of strings, as pairs (copies: the
// config's bytes are gone after init); null when it is not one.
function pairs(config: Value, name: string): Pair[] | null {
  const out: Pair[] = [];
  const v = config.get(name);
  if (!v || v.kind == Kind.Null) return out;
  if (v.kind != Kind.Object) return null;
  const members = v.members();
  for (let i = 0; i < members.length; i++) {
    const field = members[i].value.asString();
    if (field === null) return null;
    out.push(new Pair(members[i].name, field));
  }
  return out;
}

function init(config: Value): string | null {
  const l = pairs(config, "lift");
  if (l === null) return 'headers: config "lift" must be an object of strings';
  const t = pairs(config, "tag");
  if (t === null) return 'headers: config "tag" must be an object of strings';
  lift = l;
  tag = t;
  const d = config.get("drop");
  if (!d || d.kind == Kind.Null) return null;
  if (d.kind != Kind.Array) return 'headers: config "drop" must be an array of strings';
  const names = d.elements();
  for (let i = 0; i < names.length; i++) {
    const name = names[i].asString();
    if (name === null) return 'headers: config "drop" must be an array of strings';
    drop.push(name);
  }
  return null;
}

function process(r: Record, out: Output): string | null {
  for (let i = 0; i < lift.length; i++) {
    const v = r.header(lift[i].header);
    if (v !== null) r.setString(lift[i].field, v); // a failed edit fails the record at emit
  }
  for (let i = 0; i < tag.length; i++) {
    const v = r.get(tag[i].field);
    if (v && v.kind == Kind.String) r.setHeader(tag[i].header, v.asString()!);
  }
  for (let i = 0; i < drop.length; i++) r.deleteHeader(drop[i]);
  out.emit(r);
  return null;
}

register(init, process);
