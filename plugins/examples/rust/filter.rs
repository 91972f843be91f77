//! filter: drops the records whose configured numeric field is below a
//! minimum (config {"field": "temp", "min": 0}). Records where the field is
//! missing or not a number pass. Same behaviour as plugins/examples/go/filter.

#[path = "../../sdk/rust/sluice.rs"]
mod sluice;

use sluice::{Output, Record, Value};

struct Filter {
    field: String,
    min: f64,
}

impl sluice::Transform for Filter {
    fn new(config: &Value) -> Result<Self, String> {
        let field = config.get("field").and_then(|v| v.as_str()).filter(|f| !f.is_empty());
        let min = config.get("min").and_then(|v| v.as_f64());
        match (field, min) {
            (Some(field), Some(min)) => Ok(Filter { field: field.into_owned(), min }),
            _ => Err(r#"filter: config needs "field" and "min", e.g. {field: temp, min: 0}"#.to_string()),
        }
    }

    fn process(&mut self, r: &mut Record, out: &mut Output) -> Result<(), String> {
        match r.get_f64(&self.field) {
            Some(v) if v < self.min => {} // dropped: counts as delivered
            _ => out.emit(r),
        }
        Ok(())
    }
}

sluice::export!(Filter);
