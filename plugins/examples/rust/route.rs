//! route: sets the destination (Kafka topic or ClickHouse table) from a
//! field's value through a table, and the Kafka key from another field.
//! Config: {"field": "kind", "routes": {"alert": "alerts"}, "default": "",
//! "key": "device_id"} ("field" and "key" default as shown; "routes" is
//! required). Same behaviour as plugins/examples/go/route.

#[path = "../../sdk/rust/sluice.rs"]
mod sluice;

use std::collections::HashMap;

use sluice::{Kind, Output, Record, Value};

struct Route {
    field: String,
    routes: HashMap<Vec<u8>, String>,
    default: String,
    key: String,
}

/// A string member of the config: None when absent or null.
fn config_string(config: &Value, name: &str) -> Result<Option<String>, String> {
    match config.get(name) {
        None => Ok(None),
        Some(v) if v.kind() == Kind::Null => Ok(None),
        Some(v) => match v.as_str() {
            Some(s) => Ok(Some(s.into_owned())),
            None => Err(format!("route: config \"{}\" must be a string", name)),
        },
    }
}

impl sluice::Transform for Route {
    fn new(config: &Value) -> Result<Self, String> {
        let mut routes = HashMap::new();
        if let Some(table) = config.get("routes") {
            if !matches!(table.kind(), Kind::Object | Kind::Null) {
                return Err(r#"route: config "routes" must be an object of strings"#.to_string());
            }
            for (value, dest) in table.members() {
                let dest = dest.as_str().ok_or(r#"route: config "routes" must be an object of strings"#)?;
                routes.insert(value.into_owned().into_bytes(), dest.into_owned()); // a repeated value takes the last
            }
        }
        if routes.is_empty() {
            return Err(r#"route: config needs "routes", e.g. {field: kind, routes: {alarm: alarms}}"#.to_string());
        }
        Ok(Route {
            field: config_string(config, "field")?.unwrap_or_else(|| "kind".to_string()),
            routes,
            default: config_string(config, "default")?.unwrap_or_default(),
            key: config_string(config, "key")?.unwrap_or_else(|| "device_id".to_string()),
        })
    }

    fn process(&mut self, r: &mut Record, out: &mut Output) -> Result<(), String> {
        // Values and keys are compared and copied as bytes, as the Go example does.
        let value = r.get(&self.field).and_then(|v| v.as_str_bytes());
        match value.and_then(|v| self.routes.get(v.as_ref())) {
            Some(d) => r.dest = d.as_bytes().to_vec().into(),
            None if !self.default.is_empty() => r.dest = self.default.as_bytes().to_vec().into(),
            None => {}
        }
        if !self.key.is_empty() {
            if let Some(k) = r.get(&self.key).and_then(|v| v.as_str_bytes()).map(|k| k.into_owned()) {
                r.key = k.into();
            }
        }
        out.emit(r);
        Ok(())
    }
}

sluice::export!(Route);
