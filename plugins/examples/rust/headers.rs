//! headers: moves data between a record's fields and its Kafka headers.
//! Config (every member optional):
//!   {"lift": {"trace-id": "trace_id"},  header -> field: the first header's
//!                                        value becomes a string field
//!    "tag":  {"event-type": "kind"},    field -> header: a string field's
//!                                        value sets the first header of
//!                                        that name, or adds one
//!    "drop": ["x-debug"]}               headers removed, every one of a name
//! applied in that order (lift, tag, drop), each in the config's order. A
//! record that is not a JSON object fails when a header is lifted into it.
//! Same behaviour as the C and AssemblyScript headers examples (and the Go
//! reference in plugins/examples/go/headers).

#[path = "../../sdk/rust/sluice.rs"]
mod sluice;

use sluice::{Kind, Output, Record, Value};

struct Headers {
    lift: Vec<(String, String)>,
    tag: Vec<(String, String)>,
    drop: Vec<String>,
}

/// The config member `name`, an object of strings, as (name, value) pairs.
fn pairs(config: &Value, name: &str) -> Result<Vec<(String, String)>, String> {
    let bad = || format!("headers: config \"{}\" must be an object of strings", name);
    let obj = match config.get(name) {
        None => return Ok(Vec::new()),
        Some(v) if v.kind() == Kind::Null => return Ok(Vec::new()),
        Some(v) if v.kind() != Kind::Object => return Err(bad()),
        Some(v) => v,
    };
    let mut out = Vec::new();
    for (header, field) in obj.members() {
        let field = field.as_str().ok_or_else(bad)?;
        out.push((header.into_owned(), field.into_owned()));
    }
    Ok(out)
}

impl sluice::Transform for Headers {
    fn new(config: &Value) -> Result<Self, String> {
        let (lift, tag) = (pairs(config, "lift")?, pairs(config, "tag")?);
        let mut drop = Vec::new();
        match config.get("drop") {
            Some(v) if v.kind() == Kind::Array => {
                for el in v.elements() {
                    let name = el.as_str().ok_or(r#"headers: config "drop" must be an array of strings"#)?;
                    drop.push(name.into_owned());
                }
            }
            Some(v) if v.kind() != Kind::Null => {
                return Err(r#"headers: config "drop" must be an array of strings"#.to_string())
            }
            _ => {}
        }
        Ok(Headers { lift, tag, drop })
    }

    fn process(&mut self, r: &mut Record, out: &mut Output) -> Result<(), String> {
        for (header, field) in &self.lift {
            if let Some(v) = r.header(header) {
                let v = String::from_utf8_lossy(v).into_owned();
                r.set_str(field, &v)?;
            }
        }
        for (header, field) in &self.tag {
            if let Some(v) = r.get(field).and_then(|v| v.as_str_bytes()).map(|v| v.into_owned()) {
                r.set_header(header, &v);
            }
        }
        for name in &self.drop {
            r.delete_header(name);
        }
        out.emit(r);
        Ok(())
    }
}

sluice::export!(Headers);
