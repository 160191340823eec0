//! Request header decoding.
//!
//! Kafka's header layout depends on the API key and version (flexible versions add tagged
//! fields), so the key and version are read first, checked against [`crate::versions`], and only
//! then is the header decoded with the right layout.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use crate::versions::{min_served_version, supported_range};

/// A request whose header decoded and whose API and version we serve; `body` is the rest of
/// the frame, still encoded.
#[derive(Debug)]
pub struct DecodedHeader {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// Kafka closes the connection on an API key it does not know.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// A version outside our range. For ApiVersions the broker still answers (KIP-511);
    /// for any other API the connection is closed.
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("malformed request header: {0}")]
    Malformed(String),
}

/// Decodes the header of one frame body (the bytes after the size prefix).
pub fn decode_header(mut frame: Bytes) -> Result<DecodedHeader, HeaderError> {
    if frame.len() < 8 {
        return Err(HeaderError::Malformed(format!(
            "{} bytes is too short",
            frame.len()
        )));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(key).map_err(|()| HeaderError::UnknownApiKey(key))?;
    let range = supported_range(api_key).ok_or(HeaderError::UnknownApiKey(key))?;
    if version < min_served_version(api_key) || version > range.max {
        return Err(HeaderError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| HeaderError::Malformed(e.to_string()))?;
    // `decode` consumed the header from the front of `frame`; what is left is the body.
    let body = frame.copy_to_bytes(frame.remaining());
    Ok(DecodedHeader {
        api_key,
        header,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn raw(key: i16, version: i16, corr: i32, client_id: &str, flexible: bool) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(key);
        b.put_i16(version);
        b.put_i32(corr);
        b.put_i16(client_id.len() as i16);
        b.put_slice(client_id.as_bytes());
        if flexible {
            b.put_u8(0); // no tagged fields
        }
        b.put_slice(b"BODY");
        b.freeze()
    }

    #[test]
    fn decodes_v1_and_v2_headers_and_keeps_the_body() {
        let d = decode_header(raw(18, 0, 7, "cli", false)).unwrap();
        assert_eq!(d.api_key, ApiKey::ApiVersions);
        assert_eq!(d.header.correlation_id, 7);
        assert_eq!(d.header.client_id.as_deref(), Some("cli"));
        assert_eq!(&d.body[..], b"BODY");

        let d = decode_header(raw(18, 3, 9, "x", true)).unwrap();
        assert_eq!(d.header.correlation_id, 9);
        assert_eq!(&d.body[..], b"BODY");
    }

    #[test]
    fn unknown_keys_and_versions_are_reported_with_the_correlation_id() {
        assert_eq!(
            decode_header(raw(999, 0, 1, "", false)).unwrap_err(),
            HeaderError::UnknownApiKey(999)
        );
        assert_eq!(
            decode_header(raw(18, 99, 5, "", true)).unwrap_err(),
            HeaderError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                version: 99,
                correlation_id: 5
            }
        );
        assert!(matches!(
            decode_header(raw(0, 2, 5, "", false)),
            Err(HeaderError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn truncated_headers_are_malformed_not_panics() {
        assert!(matches!(
            decode_header(Bytes::from_static(&[0, 18])),
            Err(HeaderError::Malformed(_))
        ));
        let mut b = BytesMut::new();
        b.put_i16(18);
        b.put_i16(0);
        b.put_i32(1);
        b.put_i16(50); // client id claims 50 bytes, none follow
        assert!(matches!(
            decode_header(b.freeze()),
            Err(HeaderError::Malformed(_))
        ));
    }
}
