//! Response helpers shared by both APIs.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

/// A JSON response with the given content type and extra headers.
/// What an API handler tells the log about a request it answered.
pub(crate) struct Outcome {
    pub response: Response,
    pub status: u16,
    pub rows: usize,
    pub charged: f64,
}

impl From<Response> for Outcome {
    fn from(response: Response) -> Outcome {
        Outcome {
            status: response.status().as_u16(),
            response,
            rows: 0,
            charged: 0.0,
        }
    }
}

pub(crate) fn json_response(
    status: StatusCode,
    content_type: &'static str,
    headers: HeaderMap,
    body: &Value,
) -> Response {
    let mut resp = (status, headers, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A response whose JSON body is already text.
pub(crate) fn text_response(
    status: StatusCode,
    content_type: &'static str,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut resp = (status, headers, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Sets a header whose value is built at run time; values we build are always
/// valid header text, and a bad one is skipped rather than failing the request.
pub(crate) fn set(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// Renders a credit amount the way the APIs print it: whole numbers without ".0".
pub(crate) fn credits_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

/// A credit amount as JSON: an integer when whole.
pub(crate) fn credits_json(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

fn reset_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "simulated connection reset",
    )
}

/// The `reset` fault: the body stream fails at once, so hyper drops the
/// connection before any response byte is written.
pub(crate) fn reset_response() -> Response {
    let body = Body::from_stream(futures::stream::iter([Err::<Bytes, _>(reset_error())]));
    Response::new(body)
}

/// The `truncate` fault: a 200 that promises the full body length but sends
/// only half of it before the connection is cut. The pause lets hyper flush
/// the head and the half before the failing chunk aborts the connection.
pub(crate) fn truncated_response(full: &Value) -> Response {
    use futures::StreamExt;
    let text = full.to_string().into_bytes();
    let half = Bytes::copy_from_slice(&text[..text.len() / 2]);
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(half) }).chain(
        futures::stream::once(async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            Err(reset_error())
        }),
    );
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    resp
}

/// The `gzipbomb` fault: a 200 of about 1 MB, gzip-encoded, that inflates to 1 GiB (a JSON
/// envelope whose one string never ends in time). Compressed once, on first use.
pub(crate) fn gzip_bomb_response() -> Response {
    static BOMB: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let body = BOMB.get_or_init(|| {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let spaces = vec![b' '; 1 << 20];
        gz.write_all(b"{\"jobs\": [], \"career_sites\": [], \"padding\": \"")
            .and_then(|()| (0..1024).try_for_each(|_| gz.write_all(&spaces)))
            .and_then(|()| gz.write_all(b"\"}"))
            .expect("writing to memory");
        Bytes::from(gz.finish().expect("writing to memory"))
    });
    let mut resp = (StatusCode::OK, body.clone()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    resp
}

/// The `nonjson` fault: what a proxy in front of the API sends when it breaks.
pub(crate) fn html_response() -> Response {
    let body = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\
                <body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>\
                </body></html>\n";
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// The reason phrase the APIs put in their `error` / `title` fields.
pub(crate) fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}
