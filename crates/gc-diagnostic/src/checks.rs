//! Connectivity checks: TCP reachability, the web service's version route, and an AMQP 0-9-1
//! handshake (protocol header → `Connection.Start`) that proves a broker answers without
//! logging in to it.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The web service's base URL as the SDK chooses it (PROTOCOL-SDK §1.1), with the
/// `GLOBUS_SDK_SERVICE_URL_COMPUTE` override the endpoint CLI honours for self-hosted services.
pub fn web_service_url(env: &dyn Fn(&str) -> Option<String>) -> String {
    if let Some(url) = env("GLOBUS_SDK_SERVICE_URL_COMPUTE").filter(|u| !u.is_empty()) {
        return url.trim_end_matches('/').to_string();
    }
    match environment(env).as_str() {
        "local" => "http://localhost:5000".into(),
        "preview" => "https://compute.api.preview.globus.org".into(),
        "dev" => "https://api.dev.funcx.org".into(),
        e @ ("sandbox" | "test" | "integration" | "staging") => {
            format!("https://compute.api.{e}.globuscs.info")
        }
        _ => "https://compute.api.globus.org".into(),
    }
}

/// `GLOBUS_SDK_ENVIRONMENT`, else `production`.
pub fn environment(env: &dyn Fn(&str) -> Option<String>) -> String {
    env("GLOBUS_SDK_ENVIRONMENT")
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "production".into())
}

/// The broker host: the web service's host when the service URL is overridden (a self-hosted
/// service usually has its broker beside it), else upstream's per-environment host.
pub fn amqp_host(env: &dyn Fn(&str) -> Option<String>) -> String {
    if env("GLOBUS_SDK_SERVICE_URL_COMPUTE").is_some_and(|u| !u.is_empty()) {
        if let Some(host) = url::Url::parse(&web_service_url(env))
            .ok()
            .and_then(|u| u.host_str().map(String::from))
        {
            return host;
        }
    }
    match environment(env).as_str() {
        "local" => "localhost".into(),
        "dev" => "amqps.dev.funcx.org".into(),
        "preview" => "compute.amqps.preview.globus.org".into(),
        e @ ("sandbox" | "test" | "integration" | "staging") => {
            format!("compute.amqps.{e}.globuscs.info")
        }
        _ => "compute.amqps.globus.org".into(),
    }
}

/// `(host, port)` of a URL, with the scheme's default port.
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let u = url::Url::parse(url).ok()?;
    Some((u.host_str()?.to_string(), u.port_or_known_default()?))
}

fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `Connected successfully to …` or `Connection failed to …` (upstream's wording).
pub fn tcp(host: &str, port: u16) -> String {
    match connect(host, port) {
        Ok(_) => format!("Connected successfully to {host} over port {port}!\n"),
        Err(e) => format!("Connection failed to {host} over port {port}: {e}\n"),
    }
}

/// `GET {base}/v2/version?service=all`: the status and body, or why it failed.
pub fn service_version(base: &str) -> String {
    let url = format!("{}/v2/version?service=all", base.trim_end_matches('/'));
    let client = match reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
    {
        Ok(c) => c,
        Err(e) => return format!("Could not build an HTTP client: {e}\n"),
    };
    match client.get(&url).send() {
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().unwrap_or_default();
            format!("GET {url}: HTTP {status}\n{body}\n")
        }
        Err(e) => format!("GET {url} failed: {e}\n"),
    }
}

/// Why an AMQP handshake did not give a `Connection.Start`.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The TCP connection or a read/write failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer answered something that is not an AMQP 0-9-1 `Connection.Start`.
    #[error("not an AMQP 0-9-1 Connection.Start: {0}")]
    Protocol(String),
}

/// What a broker says about itself in `Connection.Start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerHello {
    /// `version-major.version-minor` of the protocol.
    pub protocol: String,
    /// `product`, `version` and `cluster_name` from the server properties, when present.
    pub properties: Vec<(String, String)>,
    /// `mechanisms` (space separated).
    pub mechanisms: String,
}

/// Send the AMQP 0-9-1 protocol header and read the broker's `Connection.Start`, then close
/// the socket (no login is attempted).
pub fn amqp_hello(host: &str, port: u16) -> Result<BrokerHello, AmqpError> {
    let mut s = connect(host, port)?;
    s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    s.write_all(b"AMQP\x00\x00\x09\x01")?;
    let mut header = [0u8; 7];
    s.read_exact(&mut header)?;
    if &header[..4] == b"AMQP" {
        return Err(AmqpError::Protocol(format!(
            "the broker wants protocol {:?}",
            &header[4..]
        )));
    }
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    if header[0] != 1 || size > 1 << 20 {
        return Err(AmqpError::Protocol(format!(
            "frame type {} of {size} bytes",
            header[0]
        )));
    }
    let mut payload = vec![0u8; size + 1];
    s.read_exact(&mut payload)?;
    parse_connection_start(&payload[..size])
}

/// A cursor over a frame payload; every read is bounds-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AmqpError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| AmqpError::Protocol("truncated frame".into()))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, AmqpError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, AmqpError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, AmqpError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn short_str(&mut self) -> Result<String, AmqpError> {
        let n = self.u8()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    fn long_str(&mut self) -> Result<String, AmqpError> {
        let n = self.u32()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

/// Parse a `Connection.Start` method payload (class 10, method 10).
pub fn parse_connection_start(payload: &[u8]) -> Result<BrokerHello, AmqpError> {
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    let (class, method) = (c.u16()?, c.u16()?);
    if (class, method) != (10, 10) {
        return Err(AmqpError::Protocol(format!("method {class}.{method}")));
    }
    let protocol = format!("{}-{}", c.u8()?, c.u8()?);
    let table_len = c.u32()? as usize;
    let table = c.take(table_len)?;
    let mechanisms = c.long_str()?;
    let mut properties = Vec::new();
    let mut t = Cursor { buf: table, pos: 0 };
    while t.pos < table.len() {
        let key = t.short_str()?;
        let kind = t.u8()?;
        if kind == b'S' {
            let value = t.long_str()?;
            if matches!(key.as_str(), "product" | "version" | "cluster_name") {
                properties.push((key, value));
            }
            continue;
        }
        let skip = match kind {
            b't' | b'b' | b'B' => 1,
            b's' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'l' | b'L' | b'd' | b'T' => 8,
            b'V' => 0,
            b'F' | b'A' | b'x' => t.u32()? as usize,
            other => {
                return Err(AmqpError::Protocol(format!(
                    "unknown field type {:?} in the server properties",
                    other as char
                )));
            }
        };
        t.take(skip)?;
    }
    Ok(BrokerHello {
        protocol,
        properties,
        mechanisms,
    })
}

/// The AMQP check's report text.
pub fn amqp(host: &str, port: u16) -> String {
    match amqp_hello(host, port) {
        Ok(h) => {
            let mut out = format!(
                "AMQP {} broker answered at {host}:{port}; mechanisms: {}\n",
                h.protocol, h.mechanisms
            );
            for (k, v) in h.properties {
                let _ = writeln!(out, "  {k}: {v}");
            }
            out
        }
        Err(e) => format!("AMQP handshake with {host}:{port} failed: {e}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn urls_by_environment() {
        let local = env_of(&[("GLOBUS_SDK_ENVIRONMENT", "local")]);
        assert_eq!(web_service_url(&local), "http://localhost:5000");
        assert_eq!(amqp_host(&local), "localhost");
        let own = env_of(&[(
            "GLOBUS_SDK_SERVICE_URL_COMPUTE",
            "https://compute.example.org/",
        )]);
        assert_eq!(web_service_url(&own), "https://compute.example.org");
        assert_eq!(amqp_host(&own), "compute.example.org");
        let prod = env_of(&[]);
        assert_eq!(amqp_host(&prod), "compute.amqps.globus.org");
        assert_eq!(
            host_port("http://localhost:5000"),
            Some(("localhost".into(), 5000))
        );
        assert_eq!(
            host_port("https://compute.api.globus.org"),
            Some(("compute.api.globus.org".into(), 443))
        );
    }

    #[test]
    fn connection_start_parses_and_truncation_is_an_error() {
        let mut table = b"\x0ccapabilitiesF\x00\x00\x00\x02\x00\x00".to_vec();
        for (k, v) in [("product", "RabbitMQ"), ("version", "3.12.1")] {
            table.push(k.len() as u8);
            table.extend_from_slice(k.as_bytes());
            table.push(b'S');
            table.extend_from_slice(&(v.len() as u32).to_be_bytes());
            table.extend_from_slice(v.as_bytes());
        }
        let mut p = vec![0, 10, 0, 10, 0, 9];
        p.extend_from_slice(&(table.len() as u32).to_be_bytes());
        p.extend_from_slice(&table);
        p.extend_from_slice(&5u32.to_be_bytes());
        p.extend_from_slice(b"PLAIN");
        let hello = parse_connection_start(&p).unwrap();
        assert_eq!(hello.protocol, "0-9");
        assert_eq!(hello.mechanisms, "PLAIN");
        assert_eq!(
            hello.properties,
            vec![
                ("product".into(), "RabbitMQ".into()),
                ("version".into(), "3.12.1".into())
            ]
        );
        for cut in 0..p.len() {
            assert!(parse_connection_start(&p[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn real_broker_answers() {
        // The system RabbitMQ of the test machine (README: RabbitMQ on 127.0.0.1:5672).
        let hello = amqp_hello("127.0.0.1", 5672).unwrap();
        assert_eq!(hello.protocol, "0-9");
        assert!(hello.mechanisms.contains("PLAIN"), "{hello:?}");
        assert!(
            hello
                .properties
                .contains(&("product".to_string(), "RabbitMQ".to_string())),
            "{hello:?}"
        );
    }
}
