//! `connection_url` handling (PROTOCOL-ENDPOINT §3.6), pika-compatible where it matters.
//!
//! * `amqp://` (plain, default port 5672) and `amqps://` (TLS, default port 5671);
//! * `user:password@` percent-decoded; no user info means `guest`/`guest` (pika's default);
//! * vhost = first path segment, percent-decoded (`/%2F` = `/`); empty path or `/` = `/`;
//! * query options: `heartbeat` (seconds; absent = accept the broker's proposal),
//!   `channel_max`, `frame_max` (default [`DEFAULT_FRAME_MAX`] when absent) and
//!   `socket_timeout` (seconds, used as the connect timeout) are honoured. `connection_attempts`, `retry_delay`, `stack_timeout`,
//!   `blocked_connection_timeout`, `locale`, `client_properties` and `tcp_options` are accepted
//!   and ignored (our retry policy is §3.7's, not pika's). `ssl_options` is rejected: its value
//!   is a Python-specific dict we cannot honour, and silently ignoring TLS settings would be
//!   worse than failing. Anything else is an unknown option, as in pika.
//!
//! TLS (`amqps`) uses lapin's default rustls backend with the platform verifier: the system CA
//! store (on Linux this honours `SSL_CERT_FILE`/`SSL_CERT_DIR`), hostname verification against
//! the URL host, no client certificate — the same as upstream's `ssl.create_default_context()`.

use std::fmt;

use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use percent_encoding::percent_decode_str;

use crate::error::ConfigError;

/// Plain AMQP default port.
pub const AMQP_PORT: u16 = 5672;
/// AMQP over TLS default port.
pub const AMQPS_PORT: u16 = 5671;

/// `frame_max` proposed when the URL names none. lapin keeps a send and a receive buffer of
/// 32 frames per connection and zero-fills them up front, so RabbitMQ's default of 128 KiB
/// costs 8 MiB of resident memory per connection (a UEP holds three); 8 KiB costs 0.5 MiB.
/// Large messages are simply split into more frames (a 5 MiB result is 640 frames).
/// Measured in docs/benchmarks.md (endpoint section: idle UEP 33.8 -> 10.7 MiB RSS).
pub const DEFAULT_FRAME_MAX: u32 = 8192;

/// A parsed, validated `connection_url`. `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUrl {
    /// `true` for `amqps`.
    pub tls: bool,
    /// Host name or address (never empty; pika's default is `localhost`).
    pub host: String,
    /// Port (explicit, overridden, or the scheme's default).
    pub port: u16,
    /// User name (decoded).
    pub username: String,
    /// Password (decoded).
    pub password: String,
    /// Virtual host (decoded).
    pub vhost: String,
    /// Heartbeat to propose, seconds; `None` accepts the broker's value.
    pub heartbeat: Option<u16>,
    /// `channel_max` to propose.
    pub channel_max: Option<u16>,
    /// `frame_max` to propose.
    pub frame_max: Option<u32>,
    /// Connect timeout in milliseconds (from `socket_timeout`).
    pub connect_timeout_ms: Option<u64>,
}

const IGNORED_OPTIONS: &[&str] = &[
    "connection_attempts",
    "retry_delay",
    "stack_timeout",
    "blocked_connection_timeout",
    "locale",
    "client_properties",
    "tcp_options",
];

impl AmqpUrl {
    /// Parses a `connection_url`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let parsed = url::Url::parse(text).map_err(|e| ConfigError::InvalidUrl(e.to_string()))?;
        let tls = match parsed.scheme() {
            "amqp" => false,
            "amqps" => true,
            other => return Err(ConfigError::UnsupportedScheme(other.to_owned())),
        };
        let host = match parsed.host_str() {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => "localhost".to_owned(),
        };
        let port = parsed
            .port()
            .unwrap_or(if tls { AMQPS_PORT } else { AMQP_PORT });
        let (username, password) = if parsed.username().is_empty() && parsed.password().is_none() {
            ("guest".to_owned(), "guest".to_owned())
        } else {
            (
                decode(parsed.username())?,
                decode(parsed.password().unwrap_or(""))?,
            )
        };
        let path = parsed.path();
        let vhost = if path.len() > 1 {
            // pika: the first segment after the leading '/', percent-decoded.
            let first = path[1..].split('/').next().unwrap_or("");
            decode(first)?
        } else {
            "/".to_owned()
        };
        let mut url = AmqpUrl {
            tls,
            host,
            port,
            username,
            password,
            vhost,
            heartbeat: None,
            channel_max: None,
            frame_max: None,
            connect_timeout_ms: None,
        };
        let mut seen: Vec<String> = Vec::new();
        for (key, value) in parsed.query_pairs() {
            let key = key.into_owned();
            if seen.contains(&key) {
                return Err(ConfigError::DuplicateQueryOption(key));
            }
            seen.push(key.clone());
            url.apply_option(&key, &value)?;
        }
        Ok(url)
    }

    fn apply_option(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let invalid = || ConfigError::InvalidQueryValue {
            key: key.to_owned(),
            value: value.to_owned(),
        };
        match key {
            "heartbeat" => self.heartbeat = Some(value.trim().parse().map_err(|_| invalid())?),
            "channel_max" => {
                let v: u16 = value.trim().parse().map_err(|_| invalid())?;
                if v == 0 {
                    return Err(invalid());
                }
                self.channel_max = Some(v);
            }
            "frame_max" => {
                let v: u32 = value.trim().parse().map_err(|_| invalid())?;
                // AMQP minimum frame size is 4096 (pika enforces the same bounds).
                if !(4096..=131_072).contains(&v) {
                    return Err(invalid());
                }
                self.frame_max = Some(v);
            }
            "socket_timeout" => {
                let secs: f64 = value.trim().parse().map_err(|_| invalid())?;
                if !(secs.is_finite() && secs > 0.0) {
                    return Err(invalid());
                }
                // Saturating float-to-int conversion; timeouts beyond u64 ms are meaningless.
                self.connect_timeout_ms = Some((secs * 1000.0).ceil() as u64);
            }
            "ssl_options" => return Err(ConfigError::UnsupportedQueryOption(key.to_owned())),
            k if IGNORED_OPTIONS.contains(&k) => {
                tracing::debug!(option = k, "ignoring connection_url query option");
            }
            _ => return Err(ConfigError::UnknownQueryOption(key.to_owned())),
        }
        Ok(())
    }

    /// Returns the URL with its port replaced (the `amqp_port` configuration override, applied
    /// to every connection of a Rust endpoint alike; §3.6 recommends doing so consistently).
    #[must_use]
    pub fn with_port_override(mut self, port: Option<u16>) -> Self {
        if let Some(p) = port {
            self.port = p;
        }
        self
    }

    /// The lapin form of this URL.
    #[must_use]
    pub fn to_lapin(&self) -> AMQPUri {
        AMQPUri {
            scheme: if self.tls {
                AMQPScheme::AMQPS
            } else {
                AMQPScheme::AMQP
            },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: self.username.clone(),
                    password: self.password.clone(),
                },
                host: self.host.clone(),
                port: self.port,
            },
            vhost: self.vhost.clone(),
            query: AMQPQueryString {
                frame_max: Some(self.frame_max.unwrap_or(DEFAULT_FRAME_MAX)),
                channel_max: self.channel_max,
                heartbeat: self.heartbeat,
                // pika's default socket timeout is 10 s.
                connection_timeout: Some(self.connect_timeout_ms.unwrap_or(10_000)),
                auth_mechanism: None,
            },
        }
    }
}

fn decode(s: &str) -> Result<String, ConfigError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ConfigError::InvalidUrl("percent-encoded text is not UTF-8".to_owned()))
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vhost: String =
            percent_encoding::utf8_percent_encode(&self.vhost, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        write!(
            f,
            "{}://{}:***@{}:{}/{}",
            if self.tls { "amqps" } else { "amqp" },
            self.username,
            self.host,
            self.port,
            vhost
        )
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_decoding() {
        let u = AmqpUrl::parse("amqp://u%40x:p%2Fw@broker/%2F").unwrap();
        assert!(!u.tls);
        assert_eq!(u.port, 5672);
        assert_eq!(u.username, "u@x");
        assert_eq!(u.password, "p/w");
        assert_eq!(u.vhost, "/");
        assert_eq!(u.heartbeat, None);

        let u = AmqpUrl::parse("amqps://a:b@example.org").unwrap();
        assert!(u.tls);
        assert_eq!(u.port, 5671);
        assert_eq!(u.vhost, "/");

        let u = AmqpUrl::parse("amqps://a:b@example.org:443/vh/ignored").unwrap();
        assert_eq!(u.port, 443);
        assert_eq!(u.vhost, "vh");

        let u = AmqpUrl::parse("amqp://h:1234").unwrap();
        assert_eq!(
            (u.username.as_str(), u.password.as_str()),
            ("guest", "guest")
        );
        assert_eq!(u.port, 1234);
    }

    #[test]
    fn port_override_applies_to_both_schemes() {
        let u = AmqpUrl::parse("amqps://a:b@h/v")
            .unwrap()
            .with_port_override(Some(443));
        assert_eq!(u.port, 443);
        assert_eq!(u.to_lapin().authority.port, 443);
        let u = AmqpUrl::parse("amqp://a:b@h:5999/v")
            .unwrap()
            .with_port_override(None);
        assert_eq!(u.port, 5999);
    }

    #[test]
    fn query_options() {
        let u =
            AmqpUrl::parse("amqp://a:b@h/v?heartbeat=7&socket_timeout=2.5&frame_max=8192").unwrap();
        assert_eq!(u.heartbeat, Some(7));
        assert_eq!(u.connect_timeout_ms, Some(2500));
        assert_eq!(u.frame_max, Some(8192));
        let l = u.to_lapin();
        assert_eq!(l.query.heartbeat, Some(7));
        assert_eq!(l.vhost, "v");
        let explicit = AmqpUrl::parse("amqp://h/?frame_max=131072").unwrap();
        assert_eq!(explicit.to_lapin().query.frame_max, Some(131_072));
        let absent = AmqpUrl::parse("amqp://h/").unwrap();
        assert_eq!(absent.frame_max, None);
        assert_eq!(absent.to_lapin().query.frame_max, Some(DEFAULT_FRAME_MAX));

        assert!(AmqpUrl::parse("amqp://h/?connection_attempts=3&retry_delay=1").is_ok());
        assert_eq!(
            AmqpUrl::parse("amqp://h/?bogus=1"),
            Err(ConfigError::UnknownQueryOption("bogus".into()))
        );
        assert_eq!(
            AmqpUrl::parse("amqp://h/?heartbeat=1&heartbeat=2"),
            Err(ConfigError::DuplicateQueryOption("heartbeat".into()))
        );
        assert!(matches!(
            AmqpUrl::parse("amqp://h/?heartbeat=-1"),
            Err(ConfigError::InvalidQueryValue { .. })
        ));
        assert!(matches!(
            AmqpUrl::parse("amqp://h/?ssl_options=%7B%7D"),
            Err(ConfigError::UnsupportedQueryOption(_))
        ));
    }

    #[test]
    fn bad_urls() {
        assert!(matches!(
            AmqpUrl::parse("http://h/"),
            Err(ConfigError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            AmqpUrl::parse("not a url"),
            Err(ConfigError::InvalidUrl(_))
        ));
        assert!(matches!(
            AmqpUrl::parse("amqp://h:99999/"),
            Err(ConfigError::InvalidUrl(_))
        ));
    }

    #[test]
    fn display_hides_password() {
        let u = AmqpUrl::parse("amqp://user:secret@h/v").unwrap();
        assert!(!format!("{u} {u:?}").contains("secret"));
    }
}
