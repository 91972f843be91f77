// split: splits a record with an array field into one record per element:
// {"d":1,"readings":[a,b]} becomes {"d":1,"reading":a} and
// {"d":1,"reading":b}. An empty array drops the record; a record without
// the array passes unchanged. Config (optional): {"field": "readings",
// "as": "reading"}. Same behaviour as plugins/examples/go/split.
import { Kind, Output, Record, Value, register } from "../../sdk/assemblyscript/assembly/index";
export * from "../../sdk/assemblyscript/assembly/abi";

let from = "readings";
let to = "reading";

function init(config: Value): string | null {
  const f = config.get("field");
  if (f && f.kind == Kind.String) from = f.asString()!;
  const a = config.get("as");
  if (a && a.kind == Kind.String) to = a.asString()!;
  return null;
}

function process(r: Record, out: Output): string | null {
  const arr = r.get(from);
  if (!arr || arr.kind != Kind.Array) {
    out.emit(r);
    return null;
  }
  // arr points into the input batch and stays valid while r is edited.
  const elements = arr.elements();
  r.delete(from);
  for (let i = 0; i < elements.length; i++) {
    r.setRaw(to, elements[i]);
    out.emit(r);
  }
  return null;
}

register(init, process);
