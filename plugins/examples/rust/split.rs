//! split: splits a record with an array field into one record per element:
//! {"d":1,"readings":[a,b]} becomes {"d":1,"reading":a} and
//! {"d":1,"reading":b}. An empty array drops the record; a record without
//! the array passes unchanged. Config (optional): {"field": "readings",
//! "as": "reading"}. Same behaviour as plugins/examples/go/split.

#[path = "../../sdk/rust/sluice.rs"]
mod sluice;

use sluice::{Kind, Output, Record, Value};

struct Split {
    from: String,
    to: String,
}

impl sluice::Transform for Split {
    fn new(config: &Value) -> Result<Self, String> {
        let get = |name: &str, def: &str| config.get(name).and_then(|v| v.as_str()).map_or(def.to_string(), |s| s.into_owned());
        Ok(Split { from: get("field", "readings"), to: get("as", "reading") })
    }

    fn process(&mut self, r: &mut Record, out: &mut Output) -> Result<(), String> {
        let arr = match r.get(&self.from) {
            Some(v) if v.kind() == Kind::Array => v.raw().to_vec(),
            _ => {
                out.emit(r);
                return Ok(());
            }
        };
        r.delete(&self.from)?;
        for el in Value::new(&arr).elements() {
            r.set_raw(&self.to, el.raw())?;
            out.emit(r);
        }
        Ok(())
    }
}

sluice::export!(Split);
