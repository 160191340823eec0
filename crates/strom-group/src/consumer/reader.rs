//! A bounds-checked cursor over bytes from the wire or the log: every read fails on missing
//! bytes instead of panicking, and nothing is allocated from a count before its bytes are there.

pub(crate) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    pub(crate) fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(crate) fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    /// An i32 count whose entries (each at least `min` bytes) fit in what is left.
    pub(crate) fn count(&mut self, min: usize) -> Option<usize> {
        let n = usize::try_from(self.i32()?).ok()?;
        (n.saturating_mul(min.max(1)) <= self.0.len()).then_some(n)
    }
    /// UTF-8 of `len` bytes.
    pub(crate) fn utf8(&mut self, len: usize) -> Option<String> {
        Some(std::str::from_utf8(self.take(len)?).ok()?.to_string())
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
