//! The message browser's reads: a page of records from an offset or a time, optionally only
//! those containing a substring, with keys, header values and values shown as JSON, text or
//! hex. Every read is bounded: at most [`PAGE_MESSAGES_MAX`] returned and, when searching, at
//! most [`SEARCH_SCAN_MESSAGES_MAX`] examined per request (the answer says where to go on).

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use strom_broker::local::{Local, Message};

use super::api_error::{ApiError, ApiResult};

/// Default and largest page.
pub const PAGE_MESSAGES_DEFAULT: usize = 50;
pub const PAGE_MESSAGES_MAX: usize = 500;
/// Most records one search request looks at before answering with what it found.
pub const SEARCH_SCAN_MESSAGES_MAX: usize = 10_000;
/// Longest substring searched for.
const SEARCH_BYTES_MAX: usize = 1024;

#[derive(Debug, Deserialize)]
pub struct BrowseQuery {
    #[serde(default)]
    pub partition: i32,
    /// First offset to show; without it (and without `timestamp`) the newest page.
    pub offset: Option<i64>,
    /// Milliseconds since the epoch: start at the first record at or after it.
    pub timestamp: Option<i64>,
    pub limit: Option<usize>,
    /// Only records whose key, value or a header value contains this text.
    pub search: Option<String>,
    /// `auto` (the default: JSON, else UTF-8 text, else hex), `text` or `hex`.
    pub format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Auto,
    Text,
    Hex,
}

/// Reads a page; see the module docs.
pub async fn browse(local: &Local, topic: &str, q: BrowseQuery) -> ApiResult<Value> {
    let limit = q.limit.unwrap_or(PAGE_MESSAGES_DEFAULT);
    if limit == 0 || limit > PAGE_MESSAGES_MAX {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {PAGE_MESSAGES_MAX}, not {limit}"
        )));
    }
    let format = match q.format.as_deref().unwrap_or("auto") {
        "auto" => Format::Auto,
        "text" => Format::Text,
        "hex" => Format::Hex,
        other => {
            return Err(ApiError::bad_request(format!(
                "format must be auto, text or hex, not {other:?}"
            )))
        }
    };
    if let Some(s) = &q.search {
        if s.len() > SEARCH_BYTES_MAX {
            return Err(ApiError::bad_request(format!(
                "search text is longer than {SEARCH_BYTES_MAX} bytes"
            )));
        }
    }
    let search = q.search.filter(|s| !s.is_empty());
    let (start, end) = local.offsets(topic, q.partition)?;
    let from = match (q.offset, q.timestamp) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give offset or timestamp, not both"))
        }
        (Some(o), None) => {
            if o < start || o > end {
                return Err(ApiError::bad_request(format!(
                    "offset {o} is out of range: partition {} has offsets {start} to {end}",
                    q.partition
                )));
            }
            o
        }
        (None, Some(ts)) => local.offset_for_timestamp(topic, q.partition, ts)?,
        (None, None) if search.is_some() => start,
        (None, None) => (end - limit as i64).max(start),
    };
    let mut messages = Vec::new();
    let mut next = from;
    let mut scanned = 0usize;
    while messages.len() < limit && next < end && scanned < SEARCH_SCAN_MESSAGES_MAX {
        let want = if search.is_some() {
            PAGE_MESSAGES_MAX
        } else {
            limit - messages.len()
        };
        let read = local
            .read(topic, q.partition, next, want, Duration::ZERO)
            .await?;
        if read.messages.is_empty() {
            break;
        }
        for m in read.messages {
            if messages.len() == limit || scanned == SEARCH_SCAN_MESSAGES_MAX {
                break;
            }
            scanned += 1;
            next = m.offset + 1;
            if search.as_deref().is_none() || search.as_deref().is_some_and(|s| contains(&m, s)) {
                messages.push(render(&m, format));
            }
        }
        if search.is_none() {
            next = next.max(read.next_offset.min(end));
        }
    }
    Ok(json!({
        "topic": topic,
        "partition": q.partition,
        "start_offset": start,
        "end_offset": end,
        "from_offset": from,
        "messages": messages,
        "next_offset": next,
        "prev_offset": (from - limit as i64).max(start),
        "scanned": scanned,
        "search_done": search.is_none() || next >= end,
    }))
}

fn contains(m: &Message, needle: &str) -> bool {
    let n = needle.as_bytes();
    let hit = |b: &Option<Bytes>| b.as_ref().is_some_and(|b| find(b, n));
    hit(&m.key)
        || hit(&m.value)
        || m.headers
            .iter()
            .any(|(k, v)| find(k.as_bytes(), n) || hit(v))
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn render(m: &Message, format: Format) -> Value {
    json!({
        "offset": m.offset,
        "timestamp_ms": m.timestamp_ms,
        "key": show(m.key.as_ref(), format),
        "value": show(m.value.as_ref(), format),
        "headers": m.headers.iter().map(|(k, v)| json!({"key": k, "value": show(v.as_ref(), format)})).collect::<Vec<_>>(),
    })
}

/// Bytes as `{"encoding": "json"|"text"|"hex", "data": ...}`, or null.
fn show(bytes: Option<&Bytes>, format: Format) -> Value {
    let Some(b) = bytes else {
        return Value::Null;
    };
    let hex = || json!({"encoding": "hex", "data": to_hex(b), "size": b.len()});
    if format == Format::Hex {
        return hex();
    }
    match std::str::from_utf8(b) {
        Ok(text) => {
            if format == Format::Auto {
                let t = text.trim_start();
                if t.starts_with('{') || t.starts_with('[') {
                    if let Ok(v) = serde_json::from_str::<Value>(text) {
                        return json!({"encoding": "json", "data": v, "text": text, "size": b.len()});
                    }
                }
            }
            json!({"encoding": "text", "data": text, "size": b.len()})
        }
        Err(_) => hex(),
    }
}

fn to_hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for byte in b {
        let _ = write!(s, "{byte:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_show_as_json_text_or_hex() {
        let j = show(Some(&Bytes::from_static(b"{\"a\":1}")), Format::Auto);
        assert_eq!(j["encoding"], "json");
        assert_eq!(j["data"]["a"], 1);
        let t = show(Some(&Bytes::from_static(b"hello")), Format::Auto);
        assert_eq!(t["encoding"], "text");
        assert_eq!(t["data"], "hello");
        let h = show(Some(&Bytes::from_static(&[0xff, 0x00])), Format::Auto);
        assert_eq!(h["encoding"], "hex");
        assert_eq!(h["data"], "ff00");
        assert_eq!(show(None, Format::Auto), Value::Null);
        assert_eq!(
            show(Some(&Bytes::from_static(b"{")), Format::Auto)["encoding"],
            "text"
        );
    }
}
