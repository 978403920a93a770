//! Text read from files and shown to people. Files are read up to a limit (a path such as
//! /dev/zero must not fill memory) with a UTF-8 byte order mark removed; what a command printed is
//! shown with its control characters escaped, so that it cannot retitle an operator's terminal,
//! clear the screen or overwrite a line with a carriage return.

use std::borrow::Cow;
use std::fmt::Write;
use std::io::Read;
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadText {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("larger than {} (not read)", human_bytes(*.0))]
    TooLarge(u64),
    #[error("not UTF-8 text: {0}")]
    NotUtf8(#[from] std::string::FromUtf8Error),
}

/// Reads at most `limit` bytes of `path` (`-` is standard input) as UTF-8 text, without a
/// leading byte order mark.
pub fn read_text(path: &Path, limit: u64) -> Result<String, ReadText> {
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().take(limit + 1).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path)?
            .take(limit + 1)
            .read_to_end(&mut bytes)
    };
    read?;
    if bytes.len() as u64 > limit {
        return Err(ReadText::TooLarge(limit));
    }
    let text = String::from_utf8(bytes)?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
}

/// `bytes` as "128 MiB", "16 KiB" or "100 bytes".
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// `text` with every control character (C0 but tab, DEL, C1) written as an escape (`\r`, `\x1b`,
/// `\u{9b}`): fit for one line of a terminal or a log.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// [`escape_control`], keeping line breaks: fit for output shown as lines.
pub fn escape_control_lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\t' && !(keep_newlines && c == '\n'))
            || matches!(c, '\u{2028}' | '\u{2029}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !unsafe_char(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(escape_control("plain\ttext ü"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control("\x1b]0;owned\x07ok\rsucceeded\0\u{9b}2J\x7f\n"),
            "\\x1b]0;owned\\x07ok\\rsucceeded\\0\\u{9b}2J\\x7f\\n"
        );
        assert_eq!(escape_control_lines("a\nb\x1b[2J\n"), "a\nb\\x1b[2J\n");
        assert_eq!(escape_control("line\u{2028}sep"), "line\\u{2028}sep");
    }

    #[test]
    fn reads_are_bounded_and_lose_the_bom() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, "\u{feff}{}").unwrap();
        assert_eq!(read_text(&path, 100).unwrap(), "{}");
        std::fs::write(&path, "x".repeat(101)).unwrap();
        assert_eq!(
            read_text(&path, 100).unwrap_err().to_string(),
            "larger than 100 bytes (not read)"
        );
        let zero = read_text(Path::new("/dev/zero"), 16 << 20).unwrap_err();
        assert_eq!(zero.to_string(), "larger than 16 MiB (not read)");
        std::fs::write(&path, b"\xff\xfe").unwrap();
        assert!(read_text(&path, 100)
            .unwrap_err()
            .to_string()
            .starts_with("not UTF-8 text"));
    }
}
