//! enrich: sets every field of its config on each record (config
//! {"site": "lab-1"} sets "site"), and gives a record with a numeric "temp"
//! (°C) a "temp_f" (°F). Same behaviour as plugins/examples/go/enrich.

#[path = "../../sdk/rust/sluice.rs"]
mod sluice;

use sluice::{Output, Record, Value};

struct Enrich {
    /// (name, raw JSON value) for every member of the config.
    fields: Vec<(String, Vec<u8>)>,
}

impl sluice::Transform for Enrich {
    fn new(config: &Value) -> Result<Self, String> {
        let fields = config.members().map(|(name, v)| (name.into_owned(), v.raw().to_vec())).collect();
        Ok(Enrich { fields })
    }

    fn process(&mut self, r: &mut Record, out: &mut Output) -> Result<(), String> {
        for (name, raw) in &self.fields {
            r.set_raw(name, raw)?;
        }
        if let Some(t) = r.get_f64("temp") {
            r.set_f64("temp_f", t * 9.0 / 5.0 + 32.0)?;
        }
        out.emit(r);
        Ok(())
    }
}

sluice::export!(Enrich);
