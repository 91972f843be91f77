//! identity: returns every record unchanged; measures the cost of the ABI.

#[path = "../../sdk/rust/sluice.rs"]
mod sluice;

use sluice::{Output, Record, Value};

struct Identity;

impl sluice::Transform for Identity {
    fn new(_config: &Value) -> Result<Self, String> {
        Ok(Identity)
    }

    fn process(&mut self, r: &mut Record, out: &mut Output) -> Result<(), String> {
        out.emit(r);
        Ok(())
    }
}

sluice::export!(Identity);
