//! Line framing, in two steps as for Kafka frames: first find out whether a whole line is
//! buffered and within the limit, only then hand it on to be parsed. An incomplete line means
//! "read more", never an error. No I/O happens here.
//!
//! A line longer than the limit is reported once, as soon as the limit is passed, and the rest
//! of it (up to and including its newline) is discarded as it arrives, so a too-long line
//! costs at most `max_line_bytes` of memory and the connection stays usable.

use bytes::{Buf, BytesMut};

/// What the buffer yields next.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One line without its `\n` (and without a `\r` before it).
    Line(BytesMut),
    /// A line passed the limit; its bytes are being discarded.
    TooLong,
}

#[derive(Debug)]
pub struct LineBuffer {
    buf: BytesMut,
    max_line_bytes: usize,
    /// Bytes at the front of `buf` already searched for a newline.
    scanned: usize,
    /// Inside a too-long line: drop bytes until its newline.
    discarding: bool,
}

impl LineBuffer {
    pub fn new(max_line_bytes: usize) -> LineBuffer {
        assert!(max_line_bytes > 0);
        LineBuffer {
            buf: BytesMut::new(),
            max_line_bytes,
            scanned: 0,
            discarding: false,
        }
    }

    /// The buffer to read into.
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// True if no bytes of an unfinished line are held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next complete frame, or `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let newline = self.buf[self.scanned..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| self.scanned + i);
            if self.discarding {
                match newline {
                    Some(i) => {
                        self.buf.advance(i + 1);
                        self.scanned = 0;
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        self.buf.clear();
                        self.scanned = 0;
                        return None;
                    }
                }
            }
            return match newline {
                Some(i) if i <= self.max_line_bytes => {
                    let mut line = self.buf.split_to(i + 1);
                    self.scanned = 0;
                    line.truncate(i);
                    if line.last() == Some(&b'\r') {
                        line.truncate(i - 1);
                    }
                    Some(Frame::Line(line))
                }
                Some(i) => {
                    self.buf.advance(i + 1);
                    self.scanned = 0;
                    Some(Frame::TooLong)
                }
                None if self.buf.len() > self.max_line_bytes => {
                    self.buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    Some(Frame::TooLong)
                }
                None => {
                    self.scanned = self.buf.len();
                    None
                }
            };
        }
    }

    /// At end of input: what is left, as a last line without newline (if within the limit).
    pub fn finish(&mut self) -> Option<Frame> {
        if self.discarding || self.buf.is_empty() {
            return None;
        }
        self.scanned = 0;
        Some(Frame::Line(self.buf.split()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lb: &mut LineBuffer, bytes: &[u8]) -> Vec<Frame> {
        lb.buf_mut().extend_from_slice(bytes);
        std::iter::from_fn(|| lb.next_frame()).collect()
    }

    fn line(s: &str) -> Frame {
        Frame::Line(BytesMut::from(s))
    }

    #[test]
    fn lines_come_out_whole_and_in_order() {
        let mut lb = LineBuffer::new(100);
        assert_eq!(feed(&mut lb, b"{\"a\":1}\n{\"b\""), vec![line("{\"a\":1}")]);
        assert_eq!(
            feed(&mut lb, b":2}\r\n\n"),
            vec![line("{\"b\":2}"), line("")]
        );
        assert!(lb.is_empty());
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_accepted() {
        let mut lb = LineBuffer::new(4);
        assert_eq!(feed(&mut lb, b"abcd\n"), vec![line("abcd")]);
        assert_eq!(
            feed(&mut lb, b"abcde\nok\n"),
            vec![Frame::TooLong, line("ok")]
        );
    }

    #[test]
    fn a_too_long_line_is_reported_once_and_skipped_as_it_arrives() {
        let mut lb = LineBuffer::new(4);
        assert_eq!(feed(&mut lb, b"abc"), vec![]);
        assert_eq!(feed(&mut lb, b"defgh"), vec![Frame::TooLong]);
        assert!(lb.is_empty(), "discarded bytes are not kept");
        assert_eq!(feed(&mut lb, b"ijklmnop"), vec![]);
        assert_eq!(feed(&mut lb, b"qr\nnext\n"), vec![line("next")]);
    }

    #[test]
    fn the_tail_without_newline_is_a_last_line() {
        let mut lb = LineBuffer::new(10);
        assert_eq!(feed(&mut lb, b"a\nbc"), vec![line("a")]);
        assert_eq!(lb.finish(), Some(line("bc")));
        assert_eq!(lb.finish(), None);
    }
}
