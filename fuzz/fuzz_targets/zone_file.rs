//! The zone-file lexer and loader: any text, as a file named `z.example.zone`.
//! Invariants: lexing never panics, its entries start on lines in order and within
//! the text, and loading either gives a zone or an error naming a line of the text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    match gslb::zone::fuzzing::lex(text) {
        Ok(entries) => {
            let mut last = 0;
            for (line, tokens) in entries {
                assert!(
                    line >= last && line >= 1 && line <= lines,
                    "line {line} of {lines}"
                );
                assert!(tokens > 0);
                last = line;
            }
        }
        Err(line) => assert!(line >= 1 && line <= lines, "error line {line} of {lines}"),
    }
    // The directory does not exist: $INCLUDE can never read a real file.
    let path = Path::new("/nonexistent/gslb-fuzz/z.example.zone");
    if let Err(e) = gslb::zone::fuzzing::load(path, text) {
        assert!(e.line <= lines, "{e}");
    }
});
