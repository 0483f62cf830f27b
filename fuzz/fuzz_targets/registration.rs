//! The registration JSON through validation: any bytes as a PUT body.
//! Invariants: parsing and validation never panic; an accepted NameService
//! serializes to JSON that validates again to the very same NameService (what GET
//! returns can be PUT back unchanged), and a refused one has a message (its field
//! path may hold whatever key the client sent; the API's JSON escapes it).
#![no_main]

use gslb::model::NameService;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match NameService::from_json(value) {
        Ok(ns) => {
            let again = serde_json::to_value(&ns).expect("a NameService serializes");
            let back = NameService::from_json(again.clone())
                .unwrap_or_else(|e| panic!("stored form refused: {e}: {again}"));
            assert_eq!(back, ns, "round trip changed the resource: {again}");
        }
        Err(e) => assert!(!e.message.is_empty(), "an error without a message"),
    }
});
