//! Input lines, bounded: a line longer than the limit is read to its end
//! and reported, never buffered.

use std::io::BufRead;

/// The UTF-8 byte-order mark.
pub const BOM: &[u8] = b"\xef\xbb\xbf";

/// Reads lines of at most `max` bytes without ever buffering more: a longer
/// line is consumed to its end and reported as too long.
pub struct LineReader<R> {
    inner: R,
    max: usize,
    line_no: u64,
}

/// The bad-input report for a line over `max` bytes (`Line::TooLong`).
pub fn too_long(line: u64, len: usize, max: usize) -> crate::error::BadInput {
    crate::error::BadInput { line, field: None, message: format!("line is {len} bytes, over the limit of {max}") }
}

/// One line from a `LineReader`.
pub enum Line {
    /// A line, by number (1-based); its text is in the buffer.
    Text(u64),
    /// A line over the limit: its number and length in bytes. The buffer
    /// is left empty.
    TooLong(u64, usize),
}

impl<R: BufRead> LineReader<R> {
    /// Reads `inner` in lines of at most `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        Self { inner, max, line_no: 0 }
    }

    /// Reads the next line into `buf` (without its newline). `None` at end.
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> std::io::Result<Option<Line>> {
        buf.clear();
        let mut total = 0usize;
        let mut any = false;
        loop {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if total + take <= self.max {
                buf.extend_from_slice(&chunk[..take]);
            }
            total += take;
            self.inner.consume(take + usize::from(done));
            if done {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.line_no += 1;
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        // A byte-order mark (Windows tools write one) is not part of the
        // first record.
        if self.line_no == 1 && buf.starts_with(BOM) {
            buf.drain(..BOM.len());
        }
        if total > self.max {
            buf.clear();
            return Ok(Some(Line::TooLong(self.line_no, total)));
        }
        Ok(Some(Line::Text(self.line_no)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Input;
    use crate::input::record::Record;

    #[test]
    fn line_reader_bounds_lines() {
        let data = b"short\r\nthis line is long\nok".to_vec();
        let mut r = LineReader::new(&data[..], 8);
        let mut buf = Vec::new();
        assert!(matches!(r.next_line(&mut buf).unwrap(), Some(Line::Text(1))));
        assert_eq!(buf, b"short");
        assert!(matches!(r.next_line(&mut buf).unwrap(), Some(Line::TooLong(2, 17))));
        assert!(matches!(r.next_line(&mut buf).unwrap(), Some(Line::Text(3))));
        assert_eq!(buf, b"ok");
        assert!(r.next_line(&mut buf).unwrap().is_none());
    }
    #[test]
    fn a_byte_order_mark_does_not_cost_the_first_record() {
        let data = b"\xef\xbb\xbf{\"id\":\"r\",\"ts_ms\":1,\"account\":\"a\"}\n".to_vec();
        let mut r = LineReader::new(&data[..], 1024);
        let mut buf = Vec::new();
        assert!(matches!(r.next_line(&mut buf).unwrap(), Some(Line::Text(1))));
        assert_eq!(Record::parse(&buf, 1, &Input::default()).unwrap().id, "r");
    }
}
