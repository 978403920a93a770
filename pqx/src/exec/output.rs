//! A command's output as pqx keeps it: split into lines for the log, each line bounded so that a
//! command printing megabytes without a newline cannot exhaust memory, and the last part of each
//! stream kept for the record, so that an operator sees why a command failed without the log file.

use std::collections::VecDeque;

/// The longest line passed on whole; a longer one is passed on in pieces of this size.
pub const MAX_LINE: usize = 16 * 1024;

/// How much of the end of each stream is kept for the record.
pub const TAIL_BYTES: usize = 64 * 1024;

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds `bytes`; calls `emit` for each complete line, without its line ending.
    pub fn push(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let newline = bytes.iter().take(room).position(|&b| b == b'\n');
            match newline {
                Some(i) => {
                    self.pending.extend_from_slice(&bytes[..i]);
                    emit(trim_cr(&self.pending));
                    self.pending.clear();
                    bytes = &bytes[i + 1..];
                }
                None if bytes.len() < room => {
                    self.pending.extend_from_slice(bytes);
                    bytes = &[];
                }
                None => {
                    self.pending.extend_from_slice(&bytes[..room]);
                    emit(&self.pending);
                    self.pending.clear();
                    bytes = &bytes[room..];
                }
            }
        }
    }

    /// Passes on what is left after the stream ended without a final newline.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(trim_cr(&self.pending));
            self.pending.clear();
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The last [`TAIL_BYTES`] of a stream.
#[derive(Debug, Default, Clone)]
pub struct Tail {
    bytes: VecDeque<u8>,
    dropped: bool,
}

impl Tail {
    /// Appends a line (a newline is added).
    pub fn push_line(&mut self, line: &[u8]) {
        self.bytes.extend(line);
        self.bytes.push_back(b'\n');
        if self.bytes.len() > TAIL_BYTES {
            let excess = self.bytes.len() - TAIL_BYTES;
            self.bytes.drain(..excess);
            self.dropped = true;
        }
    }

    /// The kept text; invalid UTF-8 (and a character cut at the start) becomes U+FFFD.
    pub fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let mut all = Vec::with_capacity(a.len() + b.len());
        all.extend_from_slice(a);
        all.extend_from_slice(b);
        String::from_utf8_lossy(&all).into_owned()
    }

    /// Whether the start of the stream was dropped.
    pub fn truncated(&self) -> bool {
        self.dropped
    }

    /// The last non-empty line, for a one-line summary.
    pub fn last_line(&self) -> Option<String> {
        let text = self.text();
        text.lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |l| out.push(l.to_vec()));
        }
        s.finish(|l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_across_chunks() {
        let out = split(&[b"ab", b"c\r\nde", b"f\n", b"tail"]);
        assert_eq!(
            out,
            vec![b"abc".to_vec(), b"def".to_vec(), b"tail".to_vec()]
        );
    }

    #[test]
    fn long_lines_are_cut() {
        let big = vec![b'x'; MAX_LINE * 2 + 10];
        let out = split(&[&big]);
        assert_eq!(
            out.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_LINE, MAX_LINE, 10]
        );
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail::default();
        for i in 0..10_000 {
            t.push_line(format!("line {i}").as_bytes());
        }
        assert!(t.truncated());
        assert!(t.text().len() <= TAIL_BYTES);
        assert!(t.text().ends_with("line 9999\n"));
        assert_eq!(t.last_line().as_deref(), Some("line 9999"));
    }

    #[test]
    fn tail_survives_invalid_utf8() {
        let mut t = Tail::default();
        t.push_line(b"ok \xff\xfe end");
        assert_eq!(t.text(), "ok \u{fffd}\u{fffd} end\n");
    }
}
