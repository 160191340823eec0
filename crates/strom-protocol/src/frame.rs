//! Length-prefixed frames: a big-endian `i32` size, then that many bytes.
//!
//! Decoding is two-step (as in mini-redis): [`check_frame`] says whether a whole frame is
//! buffered and that its declared size is sane; only then is the frame split off and parsed.
//! An incomplete frame means "read more", never an error.

/// Bytes of the size prefix.
pub const SIZE_PREFIX_BYTES: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size_bytes} bytes exceeds socket.request.max.bytes ({max_bytes})")]
    TooLarge { size_bytes: i64, max_bytes: usize },
    #[error("frame declares a negative or empty size ({0})")]
    BadSize(i32),
}

/// Returns `Ok(Some(n))` when the buffer starts with a whole frame whose body is `n` bytes,
/// `Ok(None)` when more bytes are needed, or an error when the declared size is invalid.
/// The size is checked before the body arrives, so an oversized frame is refused without
/// buffering it.
pub fn check_frame(buf: &[u8], max_bytes: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < SIZE_PREFIX_BYTES {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    // A request header alone is at least 8 bytes (key, version, correlation id).
    if size < 8 {
        return Err(FrameError::BadSize(size));
    }
    let size_bytes = size as usize;
    if size_bytes > max_bytes {
        return Err(FrameError::TooLarge {
            size_bytes: size as i64,
            max_bytes,
        });
    }
    if buf.len() - SIZE_PREFIX_BYTES < size_bytes {
        return Ok(None);
    }
    Ok(Some(size_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn incomplete_frames_ask_for_more() {
        assert_eq!(check_frame(&[], 100), Ok(None));
        assert_eq!(check_frame(&[0, 0], 100), Ok(None));
        let f = framed(&[1; 20]);
        assert_eq!(check_frame(&f[..10], 100), Ok(None));
        assert_eq!(check_frame(&f, 100), Ok(Some(20)));
    }

    #[test]
    fn oversized_and_negative_sizes_are_refused_before_the_body() {
        assert_eq!(
            check_frame(&1000i32.to_be_bytes(), 100),
            Err(FrameError::TooLarge {
                size_bytes: 1000,
                max_bytes: 100
            })
        );
        assert_eq!(
            check_frame(&(-5i32).to_be_bytes(), 100),
            Err(FrameError::BadSize(-5))
        );
        assert_eq!(
            check_frame(&3i32.to_be_bytes(), 100),
            Err(FrameError::BadSize(3))
        );
    }
}
