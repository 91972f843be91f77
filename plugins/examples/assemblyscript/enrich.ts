// enrich: sets every field of its config on each record (config
// {"site": "lab-1"} sets "site"), and gives a record with a numeric "temp"
// (°C) a "temp_f" (°F). Same behaviour as plugins/examples/go/enrich.
import { Output, Record, Value, register } from "../../sdk/assemblyscript/assembly/index";
export * from "../../sdk/assemblyscript/assembly/abi";

// The config's names and raw JSON values, copied: its bytes are gone after init.
const names: string[] = [];
const raws: Value[] = [];

function init(config: Value): string | null {
  const members = config.members();
  for (let i = 0; i < members.length; i++) {
    const v = members[i].value;
    const copy = heap.alloc(v.len);
    memory.copy(copy, v.ptr, v.len);
    names.push(members[i].name);
    raws.push(new Value(copy, v.len));
  }
  return null;
}

function process(r: Record, out: Output): string | null {
  for (let i = 0; i < names.length; i++) r.setRaw(names[i], raws[i]);
  const t = r.getNumber("temp");
  if (!isNaN(t)) r.setNumber("temp_f", (t * 9) / 5 + 32);
  out.emit(r); // fails the record instead if an edit failed
  return null;
}

register(init, process);
