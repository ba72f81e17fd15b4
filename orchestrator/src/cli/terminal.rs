//! Text from the server (run and task names, errors, logs, outputs) reaches a person's
//! terminal through here. A submitter or a handler could otherwise put escape sequences
//! into it that move the cursor, rewrite earlier lines, set the window title or plant
//! hyperlinks. Only colour (SGR: `ESC [ digits ; … m`, which our own styling uses) passes;
//! every other escape sequence and control character is dropped, tabs and newlines kept.

use std::borrow::Cow;

const ESC: char = '\u{1b}';

/// `text` with everything but printable characters, `\n`, `\t` and colour removed.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => out.push(c),
            ESC => {
                let mut seq = String::from(ESC);
                match chars.peek() {
                    // CSI: parameters and intermediates, then one final byte.
                    Some('[') => {
                        seq.push(chars.next().unwrap_or('['));
                        let mut final_byte = None;
                        for c in chars.by_ref() {
                            if ('\u{40}'..='\u{7e}').contains(&c) {
                                final_byte = Some(c);
                                break;
                            }
                            seq.push(c);
                        }
                        let colour_only = seq[2..].chars().all(|c| c.is_ascii_digit() || c == ';');
                        if final_byte == Some('m') && colour_only {
                            seq.push('m');
                            out.push_str(&seq);
                        }
                    }
                    // OSC (title, hyperlink, clipboard): up to BEL or ESC \.
                    Some(']') => {
                        chars.next();
                        while let Some(c) = chars.next() {
                            if c == '\u{7}' {
                                break;
                            }
                            if c == ESC && chars.peek() == Some(&'\\') {
                                chars.next();
                                break;
                            }
                        }
                    }
                    // Any other two-character escape.
                    Some(_) => {
                        chars.next();
                    }
                    None => {}
                }
            }
            c if is_control(c) => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn is_control(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || c == ESC
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn plain_text_passes_untouched() {
        assert!(matches!(
            clean("run 42 — ok\n\tdone"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn colour_passes_and_everything_else_is_dropped() {
        assert_eq!(
            clean("\u{1b}[1;31mred\u{1b}[0m"),
            "\u{1b}[1;31mred\u{1b}[0m"
        );
        assert_eq!(clean("a\u{1b}[2Jb"), "ab", "clear screen");
        assert_eq!(clean("a\u{1b}[1Ab"), "ab", "cursor up");
        assert_eq!(clean("\u{1b}]0;pwned\u{7}title"), "title", "window title");
        assert_eq!(
            clean("\u{1b}]8;;http://evil.test\u{1b}\\link\u{1b}]8;;\u{1b}\\"),
            "link",
            "hyperlink"
        );
        assert_eq!(clean("ok\rFAILED"), "okFAILED", "carriage return");
        assert_eq!(
            clean("bell\u{7}\u{8}\u{9b}31m"),
            "bell31m",
            "C0 and C1 controls"
        );
        assert_eq!(clean("cut\u{1b}"), "cut");
    }
}
