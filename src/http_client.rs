//! A small HTTP/1.1 client for the CLI and tests: one request per
//! connection, JSON in and out, bounded response size. `https://` URLs are
//! served over TLS, trusting only the CA set with [`set_ca_file`]
//! (`--ca-cert`, `TAEL_CA_CERT`).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A URL split into what a request needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// `host:port`.
    pub host: String,
    /// `/path?query`.
    pub path: String,
}

/// Splits `http://host:port/path` or `https://...`.
pub fn split_url(url: &str) -> Result<Target, String> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err(format!(
            "{url:?}: only http:// and https:// URLs are supported"
        ));
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(Target {
        https,
        host: host.to_string(),
        path: path.to_string(),
    })
}

/// The TLS client configuration for `https://` URLs, once a CA is set.
static TLS_CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Trusts the CA certificate(s) in `path` for every `https://` request of
/// this process (set once, at start-up; later calls change nothing).
pub fn set_ca_file(path: &Path) -> Result<(), String> {
    let roots = crate::tls::load_roots(path).map_err(|e| e.to_string())?;
    let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![crate::tls::ALPN_HTTP1.to_vec()];
    let _ = TLS_CONFIG.set(Arc::new(config));
    Ok(())
}

/// The name the server's certificate must carry: the host of `host:port`
/// (an IP address or a DNS name).
fn server_name(host_port: &str) -> Result<ServerName<'static>, String> {
    let host = match host_port.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host_port,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?}: {e}"))
}

async fn connect_tls(
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let config = TLS_CONFIG.get().ok_or_else(|| {
        format!(
            "https://{host} needs the CA that signed its certificate: \
             --ca-cert FILE or TAEL_CA_CERT"
        )
    })?;
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(server_name(host)?, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {host}: {e}"))
}

pub async fn request(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let headers: Vec<(&str, &str)> = content_type
        .map(|ct| ("Content-Type", ct))
        .into_iter()
        .collect();
    request_with_headers(method, url, &headers, body, timeout).await
}

/// The API key this process presents (`--api-key`, `TAEL_API_KEY`), unless a
/// request names its own `Authorization` header. Set once, at start-up.
static DEFAULT_API_KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Presents `key` as `Authorization: Bearer <key>` on every request.
pub fn set_default_api_key(key: String) {
    let _ = DEFAULT_API_KEY.set(key);
}

/// The key set by [`set_default_api_key`], for clients of other protocols
/// (OTLP/gRPC) in the same process.
pub fn default_api_key() -> Option<&'static str> {
    DEFAULT_API_KEY.get().map(String::as_str)
}

/// Like [`request`], with arbitrary extra request headers.
pub async fn request_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, String> {
    tokio::time::timeout(timeout, request_inner(method, url, headers, body))
        .await
        .map_err(|_| format!("{method} {url} timed out after {timeout:?}"))?
}

async fn request_inner(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let target = split_url(url)?;
    let host = &target.host;
    let tcp = TcpStream::connect(host)
        .await
        .map_err(|e| format!("connecting to {host}: {e}"))?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        target.path,
        body.len()
    );
    for (name, value) in headers {
        debug_assert!(!name.contains(['\r', '\n']) && !value.contains(['\r', '\n']));
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let names_its_own = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    if let (Some(key), false) = (DEFAULT_API_KEY.get(), names_its_own) {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    head.push_str("\r\n");
    let raw = if target.https {
        exchange(connect_tls(host, tcp).await?, head.as_bytes(), body).await?
    } else {
        exchange(tcp, head.as_bytes(), body).await?
    };
    parse_response(&raw)
}

/// Sends one request and reads the whole response.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: &[u8],
    body: &[u8],
) -> Result<Vec<u8>, String> {
    stream.write_all(head).await.map_err(|e| e.to_string())?;
    // A server may answer before it has read the whole body (413 for an
    // oversized one) and close: the answer is still there to read.
    let write_error = match stream.write_all(body).await {
        Ok(()) => stream.flush().await.err(),
        Err(e) => Some(e),
    };
    let mut raw = Vec::new();
    let read = (&mut stream)
        .take(MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_end(&mut raw)
        .await;
    if let Err(e) = read {
        if raw.is_empty() {
            return Err(match write_error {
                Some(w) => format!("sending the body: {w}"),
                None => format!("reading response: {e}"),
            });
        }
    }
    if raw.is_empty() {
        if let Some(w) = write_error {
            return Err(format!("sending the body: {w}"));
        }
    }
    if raw.len() > MAX_RESPONSE_BYTES {
        return Err("response too large".into());
    }
    Ok(raw)
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed response: no header end")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "malformed response head")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("malformed status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("malformed chunk")?;
        let size_str =
            std::str::from_utf8(&data[..line_end]).map_err(|_| "malformed chunk size")?;
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "malformed chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

pub async fn get(url: &str) -> Result<HttpResponse, String> {
    request("GET", url, None, b"", Duration::from_secs(30)).await
}

pub async fn post_json(url: &str, body: &serde_json::Value) -> Result<HttpResponse, String> {
    let bytes = serde_json::to_vec(body).expect("JSON values serialize");
    request(
        "POST",
        url,
        Some("application/json"),
        &bytes,
        Duration::from_secs(30),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcde"[..]));
        assert!(parse_response(b"garbage").is_err());
        assert_eq!(
            split_url("http://h:1/x?y=1").unwrap(),
            Target {
                https: false,
                host: "h:1".into(),
                path: "/x?y=1".into()
            }
        );
        let t = split_url("https://10.0.0.1:7701").unwrap();
        assert!(t.https);
        assert_eq!(t.path, "/");
        assert!(split_url("ftp://h").is_err());
        assert_eq!(
            server_name("10.0.0.1:7701").unwrap(),
            ServerName::IpAddress("10.0.0.1".parse::<std::net::IpAddr>().unwrap().into())
        );
        assert!(matches!(
            server_name("[::1]:7701").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("tael.example:7701").unwrap(),
            ServerName::DnsName(_)
        ));
    }
}

/// Longest line [`stream_lines`] accepts: one SSE event's data.
const MAX_STREAM_LINE_BYTES: usize = 16 * 1024 * 1024;

/// GETs a streaming response (server-sent events) and hands each line of
/// its body to `on_line` as it arrives, until the server ends the stream or
/// `on_line` returns false. A status other than 200 is an error carrying
/// the body.
pub async fn stream_lines(url: &str, on_line: impl FnMut(&str) -> bool) -> Result<(), String> {
    let target = split_url(url)?;
    let host = &target.host;
    let tcp = TcpStream::connect(host)
        .await
        .map_err(|e| format!("connecting to {host}: {e}"))?;
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n",
        target.path
    );
    if let Some(key) = DEFAULT_API_KEY.get() {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    head.push_str("\r\n");
    if target.https {
        stream_over(connect_tls(host, tcp).await?, head.as_bytes(), on_line).await
    } else {
        stream_over(tcp, head.as_bytes(), on_line).await
    }
}

async fn stream_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: &[u8],
    mut on_line: impl FnMut(&str) -> bool,
) -> Result<(), String> {
    stream.write_all(head).await.map_err(|e| e.to_string())?;
    let mut raw: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // The response head.
    let body_start = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if raw.len() > MAX_STREAM_LINE_BYTES {
            return Err("malformed response: no header end".into());
        }
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection before answering".into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = std::str::from_utf8(&raw[..body_start]).map_err(|_| "malformed response head")?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let status_ok = head.split(' ').nth(1) == Some("200");
    if !status_ok {
        // An error answer is short: read it whole and say what it was.
        let _ = (&mut stream).take(1024 * 1024).read_to_end(&mut raw).await;
        let resp = parse_response(&raw)?;
        return Err(format!(
            "status {}: {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        ));
    }
    let mut body = Dechunked::new(chunked);
    body.push(&raw[body_start..])?;
    loop {
        while let Some(line) = body.next_line()? {
            if !on_line(&line) {
                return Ok(());
            }
        }
        if body.ended {
            return Ok(());
        }
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        body.push(&buf[..n])?;
    }
}

/// A response body taken apart as it arrives: chunked framing removed,
/// split into lines.
struct Dechunked {
    chunked: bool,
    /// Bytes received and not yet de-framed.
    raw: Vec<u8>,
    /// De-framed bytes not yet returned as lines.
    text: Vec<u8>,
    /// The last (zero-size) chunk arrived.
    ended: bool,
}

impl Dechunked {
    fn new(chunked: bool) -> Dechunked {
        Dechunked {
            chunked,
            raw: Vec::new(),
            text: Vec::new(),
            ended: false,
        }
    }

    fn push(&mut self, data: &[u8]) -> Result<(), String> {
        if !self.chunked {
            self.text.extend_from_slice(data);
            return Ok(());
        }
        self.raw.extend_from_slice(data);
        while !self.ended {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let size_str =
                std::str::from_utf8(&self.raw[..line_end]).map_err(|_| "malformed chunk size")?;
            let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| "malformed chunk size")?;
            if size > MAX_STREAM_LINE_BYTES {
                return Err("chunk too large".into());
            }
            if size == 0 {
                self.ended = true;
                break;
            }
            let end = line_end + 2 + size + 2;
            if self.raw.len() < end {
                break;
            }
            self.text
                .extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
            self.raw.drain(..end);
        }
        if self.text.len() > MAX_STREAM_LINE_BYTES {
            return Err("line too long".into());
        }
        Ok(())
    }

    /// The next complete line, without its line ending.
    fn next_line(&mut self) -> Result<Option<String>, String> {
        let Some(end) = self.text.iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let line: Vec<u8> = self.text.drain(..=end).collect();
        let line = String::from_utf8(line).map_err(|_| "a line is not UTF-8")?;
        Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
    }
}

#[cfg(test)]
mod stream_tests {
    use super::Dechunked;

    #[test]
    fn chunks_split_anywhere_give_back_the_lines() {
        let framed = b"c\r\nevent: span\n\r\nf\r\ndata: {\"a\":1}\n\n\r\n0\r\n\r\n";
        for cut in 0..framed.len() {
            let mut d = Dechunked::new(true);
            let mut lines = Vec::new();
            for part in [&framed[..cut], &framed[cut..]] {
                d.push(part).unwrap();
                while let Some(l) = d.next_line().unwrap() {
                    lines.push(l);
                }
            }
            assert_eq!(
                lines,
                vec!["event: span", "data: {\"a\":1}", ""],
                "cut at {cut}"
            );
            assert!(d.ended);
        }
    }
}
