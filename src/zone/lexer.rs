//! Splits a master file (RFC 1035 §5.1) into logical entries, each remembering the
//! line it starts on. hickory's zone parser has no line numbers, so we do the part
//! of lexing that decides entry boundaries (comments, quotes, parentheses) here and
//! hand each entry's record data to hickory afterwards.

/// One token of an entry, as written (quotes and escapes kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    pub text: String,
    /// Written as a `"quoted string"` (then it is never a TTL, class, type or directive).
    pub quoted: bool,
}

/// One logical entry: a directive or a resource record, possibly spanning lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// 1-based line the entry starts on.
    pub line: usize,
    /// The entry's first line starts with a blank: the owner is the previous one.
    pub blank_owner: bool,
    pub tokens: Vec<Token>,
}

/// A lexing error at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LexError {
    pub line: usize,
    pub message: String,
}

/// Splits `text` into entries; blank and comment-only lines produce none.
pub(super) fn entries(text: &str) -> Result<Vec<Entry>, LexError> {
    let mut out = Vec::new();
    let mut line = 1usize;
    let mut chars = text.chars().peekable();
    // State of the entry being built.
    let mut tokens: Vec<Token> = Vec::new();
    let mut entry_line = 1usize;
    let mut blank_owner = false;
    let mut at_line_start = true;
    let mut paren_line: Option<usize> = None;
    let mut cur: Option<String> = None;

    fn flush_token(cur: &mut Option<String>, tokens: &mut Vec<Token>) {
        if let Some(t) = cur.take() {
            tokens.push(Token {
                text: t,
                quoted: false,
            });
        }
    }

    while let Some(c) = chars.next() {
        if at_line_start {
            at_line_start = false;
            if paren_line.is_none() && tokens.is_empty() {
                entry_line = line;
                blank_owner = c == ' ' || c == '\t';
            }
        }
        match c {
            '\n' => {
                flush_token(&mut cur, &mut tokens);
                if paren_line.is_none() && !tokens.is_empty() {
                    out.push(Entry {
                        line: entry_line,
                        blank_owner,
                        tokens: std::mem::take(&mut tokens),
                    });
                }
                line += 1;
                at_line_start = true;
            }
            '\r' => flush_token(&mut cur, &mut tokens),
            c if c.is_whitespace() => flush_token(&mut cur, &mut tokens),
            ';' => {
                flush_token(&mut cur, &mut tokens);
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '(' => {
                flush_token(&mut cur, &mut tokens);
                if paren_line.is_some() {
                    return Err(LexError {
                        line,
                        message: "nested '(' inside parentheses".into(),
                    });
                }
                if tokens.is_empty() {
                    entry_line = line;
                }
                paren_line = Some(line);
            }
            ')' => {
                flush_token(&mut cur, &mut tokens);
                if paren_line.take().is_none() {
                    return Err(LexError {
                        line,
                        message: "')' without a matching '('".into(),
                    });
                }
            }
            '"' => {
                flush_token(&mut cur, &mut tokens);
                let start = line;
                let mut s = String::from('"');
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            s.push('\\');
                            if let Some(n) = chars.next() {
                                if n == '\n' {
                                    line += 1;
                                }
                                s.push(n);
                            }
                        }
                        '"' => {
                            s.push('"');
                            closed = true;
                            break;
                        }
                        '\n' => {
                            line += 1;
                            s.push('\n');
                        }
                        c => s.push(c),
                    }
                }
                if !closed {
                    return Err(LexError {
                        line: start,
                        message: "unterminated quoted string".into(),
                    });
                }
                tokens.push(Token {
                    text: s,
                    quoted: true,
                });
            }
            '\\' => {
                let t = cur.get_or_insert_with(String::new);
                t.push('\\');
                if let Some(n) = chars.next() {
                    if n == '\n' {
                        return Err(LexError {
                            line,
                            message: "escaped line break".into(),
                        });
                    }
                    t.push(n);
                }
            }
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    flush_token(&mut cur, &mut tokens);
    if let Some(l) = paren_line {
        return Err(LexError {
            line: l,
            message: "'(' never closed".into(),
        });
    }
    if !tokens.is_empty() {
        out.push(Entry {
            line: entry_line,
            blank_owner,
            tokens,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(e: &Entry) -> Vec<&str> {
        e.tokens.iter().map(|t| t.text.as_str()).collect()
    }

    #[test]
    fn splits_entries_with_lines() {
        let src = "; header comment\n\
                   $TTL 300\n\
                   \n\
                   @ IN SOA ns1 host (\n\
                   \t1 ; serial\n\
                   \t2 3 4\n\
                   \t5 )\n\
                   \tIN NS ns1 ; trailing\n\
                   www A 192.0.2.1\n\
                   txt TXT \"a ; not comment\" \"b (c)\"\r\n\
                   last A 192.0.2.2";
        let e = entries(src).unwrap();
        assert_eq!(e.len(), 6);
        assert_eq!((e[0].line, texts(&e[0])), (2, vec!["$TTL", "300"]));
        assert_eq!(e[1].line, 4);
        assert_eq!(
            texts(&e[1]),
            vec!["@", "IN", "SOA", "ns1", "host", "1", "2", "3", "4", "5"]
        );
        assert!(!e[1].blank_owner);
        assert_eq!((e[2].line, e[2].blank_owner), (8, true));
        assert_eq!(texts(&e[2]), vec!["IN", "NS", "ns1"]);
        assert_eq!(e[3].line, 9);
        assert_eq!(
            texts(&e[4]),
            vec!["txt", "TXT", "\"a ; not comment\"", "\"b (c)\""]
        );
        assert!(e[4].tokens[2].quoted && !e[4].tokens[1].quoted);
        assert_eq!(
            (e[5].line, texts(&e[5])),
            (11, vec!["last", "A", "192.0.2.2"])
        );
    }

    #[test]
    fn escapes_and_quotes_spanning_lines() {
        let e = entries("a\\ b TXT \"x\\\"y\"\nb TXT \"multi\nline\"\nc A 1.2.3.4\n").unwrap();
        assert_eq!(texts(&e[0]), vec!["a\\ b", "TXT", "\"x\\\"y\""]);
        assert_eq!(e[1].line, 2);
        assert_eq!(e[2].line, 4);
    }

    #[test]
    fn errors_carry_lines() {
        for (src, line, msg) in [
            ("a A 1.2.3.4\nb TXT \"open\n\n", 2, "unterminated"),
            ("a A 1.2.3.4\n\nb SOA ( 1 2\n3\n", 3, "never closed"),
            ("a A 1.2.3.4 )\n", 1, "without a matching"),
            ("a SOA ( ( \n", 1, "nested"),
        ] {
            let err = entries(src).unwrap_err();
            assert_eq!(err.line, line, "{src:?}: {err:?}");
            assert!(err.message.contains(msg), "{src:?}: {err:?}");
        }
    }
}
