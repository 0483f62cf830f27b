//! Stored NameService values through their decoders: any bytes as a binary body
//! (formats 3 and 2) and as a whole stored value (any format byte, the checksum,
//! the revision), as startup reads them from sled.
//! Invariants: decoding never panics; a decoded NameService encodes to a body that
//! decodes to the very same NameService; a body with a valid checksum around it
//! decodes through the whole-value decoder exactly when it decodes alone and holds
//! the NameService of its key, with the revision written; a whole value that
//! decodes holds its key's NameService and encodes back to a value that decodes to
//! it again.
#![no_main]

use gslb::store::fuzzing;
use libfuzzer_sys::fuzz_target;

/// The key raw values are decoded under (the seed values are written under it).
const KEY: &[u8] = b"a.example";

fuzz_target!(|data: &[u8]| {
    // The bodies.
    for v3 in [true, false] {
        if let Ok(ns) = fuzzing::decode_body(data, v3) {
            let again = fuzzing::encode_body(&ns);
            let back = fuzzing::decode_body(&again, true)
                .unwrap_or_else(|e| panic!("re-encoded body refused: {e}"));
            assert_eq!(back, ns, "the body's round trip changed the NameService");
        }
    }

    // The body behind a valid checksum, under KEY.
    let sealed = fuzzing::seal(KEY, 7, data);
    match (
        fuzzing::decode_value(KEY, &sealed),
        fuzzing::decode_body(data, true),
    ) {
        (Ok((ns, rev)), Ok(body)) => {
            assert_eq!(rev, 7);
            assert_eq!(ns, body);
            assert_eq!(ns.name.as_bytes(), KEY);
        }
        (Err(_), Ok(body)) => assert_ne!(body.name.as_bytes(), KEY, "a sealed body refused"),
        (Ok(_), Err(e)) => panic!("a sealed value decoded whose body does not: {e}"),
        (Err(_), Err(_)) => {}
    }

    // The bytes as a whole stored value.
    if let Ok((ns, rev)) = fuzzing::decode_value(KEY, data) {
        assert_eq!(ns.name.as_bytes(), KEY, "a value decoded under another key");
        let again = fuzzing::encode_value(&ns, rev);
        let back = fuzzing::decode_value(KEY, &again)
            .unwrap_or_else(|e| panic!("re-encoded value refused: {e}"));
        assert_eq!(back, (ns, rev), "the value's round trip changed it");
    }
});
