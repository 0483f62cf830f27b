//! Reading a JSON request body: media type (415), size (413), syntax (400).
//!
//! A body that is refused is still read and thrown away, up to a bound: a server that
//! answers and closes while the client is still sending makes the kernel reset the
//! connection, and the client may then lose the answer (the "lingering close" that
//! nginx and Apache do for the same reason).

use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::{HeaderMap, header};

use super::ApiError;

/// Largest accepted request body (CONTRACT §3: 413 above 1 MiB).
pub const MAX_BODY: usize = 1 << 20;
/// At most this much of a refused body is read and discarded...
const DISCARD_MAX: usize = 16 << 20;
/// ...for at most this long.
const DISCARD_TIME: Duration = Duration::from_secs(5);

/// Checks the media type, reads at most [`MAX_BODY`] bytes and parses them as JSON.
pub async fn read_json(headers: &HeaderMap, body: Body) -> Result<serde_json::Value, ApiError> {
    if let Err(e) = check_json_media_type(headers) {
        discard(body).await;
        return Err(e);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        // A client waiting for `100 Continue` has not sent the body: it never will,
        // as the body is never polled.
        let waits = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !waits {
            discard(body).await;
        }
        return Err(ApiError::too_large(MAX_BODY));
    }
    let bytes = read_limited(body).await?;
    serde_json::from_slice(&bytes).map_err(ApiError::malformed_json)
}

/// `application/json`, optionally with `charset=utf-8` (JSON is UTF-8: RFC 8259).
fn check_json_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::unsupported_media_type(None));
    };
    let text = value.to_str().unwrap_or("");
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or("").trim();
    let params_ok = parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            let v = v.trim().trim_matches('"');
            v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
        }
        Some(_) => true,
        None => p.trim().is_empty(),
    });
    if essence.eq_ignore_ascii_case("application/json") && params_ok {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(Some(text)))
    }
}

/// Collects the body, failing with 413 once it passes [`MAX_BODY`].
async fn read_limited(mut body: Body) -> Result<Vec<u8>, ApiError> {
    let mut buf = Vec::new();
    while let Some(data) = next_frame(&mut body).await {
        let data = data.map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            )
        })?;
        if buf.len() + data.len() > MAX_BODY {
            discard_from(body, buf.len() + data.len()).await;
            return Err(ApiError::too_large(MAX_BODY));
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf)
}

async fn next_frame(body: &mut Body) -> Option<Result<axum::body::Bytes, axum::Error>> {
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Err(e) => return Some(Err(e)),
            Ok(f) => match f.into_data() {
                Ok(d) => return Some(Ok(d)),
                Err(_trailers) => continue,
            },
        }
    }
}

/// Reads and drops what the client still sends of a refused body, within bounds.
pub async fn discard(body: Body) {
    discard_from(body, 0).await;
}

async fn discard_from(mut body: Body, mut seen: usize) {
    let drain = async {
        while seen < DISCARD_MAX {
            match next_frame(&mut body).await {
                Some(Ok(d)) => seen += d.len(),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_type(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn media_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
        ] {
            assert!(check_json_media_type(&with_type(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
            "application/json; charset=latin1",
            "",
        ] {
            let e = check_json_media_type(&with_type(bad)).unwrap_err();
            assert_eq!(e.status.as_u16(), 415, "{bad}");
        }
        assert_eq!(
            check_json_media_type(&HeaderMap::new())
                .unwrap_err()
                .status
                .as_u16(),
            415
        );
    }

    #[tokio::test]
    async fn sizes_and_syntax() {
        let h = with_type("application/json");
        let v = read_json(&h, Body::from(r#"{"a": 1}"#)).await.unwrap();
        assert_eq!(v["a"], 1);
        let e = read_json(&h, Body::from("{\"a\": ")).await.unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        let e = read_json(&h, Body::from(vec![b' '; MAX_BODY + 1]))
            .await
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 413);
        // Exactly the limit is fine (and parses as nothing: a syntax error).
        let e = read_json(&h, Body::from(vec![b' '; MAX_BODY]))
            .await
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
    }
}
