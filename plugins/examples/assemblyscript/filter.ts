// filter: drops the records whose configured numeric field is below a
// minimum (config {"field": "temp", "min": 0}). Records where the field is
// missing or not a number pass. Same behaviour as plugins/examples/go/filter.
import { Output, Record, Value, register } from "../../sdk/assemblyscript/assembly/index";
export * from "../../sdk/assemblyscript/assembly/abi";

let field = "";
let min: f64 = 0;

function init(config: Value): string | null {
  const f = config.get("field");
  const m = config.get("min");
  const name = f ? f.asString() : null;
  min = m ? m.asNumber() : NaN;
  if (name === null || name.length == 0 || isNaN(min)) {
    return 'filter: config needs "field" and "min", e.g. {field: temp, min: 0}';
  }
  field = name;
  return null;
}

function process(r: Record, out: Output): string | null {
  const v = r.getNumber(field); // NaN when missing or not a number: passes
  if (v < min) return null; // dropped: counts as delivered
  out.emit(r);
  return null;
}

register(init, process);
