//! Removing secrets from text before it goes into a diagnostic report.
//!
//! Upstream's diagnostic copies configuration files and logs verbatim; this one passes every
//! line it writes through a [`Redactor`] first. Four kinds of secret are recognised:
//!
//! * passwords in URLs (`amqp://user:pass@host` → `amqp://user:***@host`);
//! * values of keys whose name says they are secret (`client_secret: x`, `"access_token": "x"`,
//!   `GLOBUS_COMPUTE_CLIENT_SECRET=x`, `password = x`, …);
//! * HTTP credentials (`Bearer x`, `Basic x`) and PEM private-key blocks;
//! * literal values the caller knows are secret (the client secret in the environment, tokens
//!   in the token store), wherever they appear.

use regex::Regex;

/// What a removed secret is replaced with.
pub const MASK: &str = "***";

/// Words that make a key's value secret (matched case-insensitively inside the key name).
const SECRET_KEY_WORDS: &str =
    r"secret|passw(?:or)?d|passphrase|token|api[_-]?key|private[_-]?key|credential|cookie";

/// Literal secrets shorter than this are not searched for: replacing every `x` or `1` in a
/// report would destroy it and protect nothing.
const MIN_LITERAL_LEN: usize = 6;

/// Redacts secrets from text (see the module documentation).
#[derive(Debug, Clone)]
pub struct Redactor {
    url_password: Regex,
    http_credentials: Regex,
    secret_value: Regex,
    private_key: Regex,
    literals: Vec<String>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

/// A pattern written in this file (not input): the unit tests compile every one of them.
fn constant_regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant pattern compiles")
}

impl Redactor {
    /// A redactor without literal secrets.
    pub fn new() -> Self {
        Self {
            url_password: constant_regex(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@]*):[^\s@/]*@"),
            http_credentials: constant_regex(
                r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/\-]+=*",
            ),
            secret_value: constant_regex(&format!(
                r#"(?i)([A-Za-z0-9_.\-]*(?:{SECRET_KEY_WORDS})[A-Za-z0-9_.\-]*["']?\s*[:=]\s*)("[^"\n]*"|'[^'\n]*'|[^\s,;}}\]"']+)"#
            )),
            private_key: constant_regex(
                r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
            ),
            literals: Vec::new(),
        }
    }

    /// Also remove `secret` wherever it appears (ignored when shorter than six characters).
    pub fn add_literal(&mut self, secret: &str) {
        let secret = secret.trim();
        if secret.len() >= MIN_LITERAL_LEN && !self.literals.iter().any(|s| s == secret) {
            self.literals.push(secret.to_string());
            // Longest first, so a secret containing another is removed whole.
            self.literals.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Add the values of environment variables whose names say they are secret.
    pub fn add_secret_env<I: IntoIterator<Item = (String, String)>>(&mut self, vars: I) {
        let key = constant_regex(&format!("(?i){SECRET_KEY_WORDS}"));
        for (k, v) in vars {
            if key.is_match(&k) {
                self.add_literal(&v);
            }
        }
    }

    /// `text` with every recognised secret replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for lit in &self.literals {
            if out.contains(lit.as_str()) {
                out = out.replace(lit.as_str(), MASK);
            }
        }
        let out = self
            .private_key
            .replace_all(&out, "-----BEGIN ${1}PRIVATE KEY----- *** (redacted) ${2}");
        let out = self.url_password.replace_all(&out, "${1}:***@");
        let out = self.http_credentials.replace_all(&out, "${1}${2}***");
        let out = self.secret_value.replace_all(&out, |c: &regex::Captures| {
            let value = &c[2];
            if value == MASK || value.contains(MASK) || value.is_empty() {
                c[0].to_string()
            } else if let Some(q) = value.chars().next().filter(|q| *q == '"' || *q == '\'') {
                format!("{}{q}{MASK}{q}", &c[1])
            } else {
                format!("{}{MASK}", &c[1])
            }
        });
        out.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        Redactor::new().redact(s)
    }

    #[test]
    fn url_passwords() {
        assert_eq!(
            r("amqp://guest:s3cr3t@127.0.0.1:5672/%2F"),
            "amqp://guest:***@127.0.0.1:5672/%2F"
        );
        assert_eq!(
            r("url=postgres://postgres:pw@db/x and https://h/x@y"),
            "url=postgres://postgres:***@db/x and https://h/x@y"
        );
        assert_eq!(r("amqps://u:p%40ss@h"), "amqps://u:***@h");
    }

    #[test]
    fn secret_keys_in_yaml_json_env() {
        assert_eq!(r("client_secret: abcdef123"), "client_secret: ***");
        assert_eq!(
            r(r#"{"access_token": "tok-123456", "expires_in": 3600}"#),
            r#"{"access_token": "***", "expires_in": 3600}"#
        );
        assert_eq!(
            r("GLOBUS_COMPUTE_CLIENT_SECRET=xyz123456"),
            "GLOBUS_COMPUTE_CLIENT_SECRET=***"
        );
        assert_eq!(r("  password = 'hunter22'"), "  password = '***'");
        assert_eq!(r("display_name: my endpoint"), "display_name: my endpoint");
    }

    #[test]
    fn http_credentials_and_keys() {
        assert_eq!(
            r("Authorization: Bearer abc.def-ghi"),
            "Authorization: Bearer ***"
        );
        let pem =
            "x\n-----BEGIN RSA PRIVATE KEY-----\nMIIabc\nqqq\n-----END RSA PRIVATE KEY-----\ny";
        let out = r(pem);
        assert!(!out.contains("MIIabc") && !out.contains("qqq"), "{out}");
        assert!(out.starts_with("x\n") && out.ends_with("\ny"), "{out}");
        let cut = "-----BEGIN PRIVATE KEY-----\nMIIabc";
        assert!(!r(cut).contains("MIIabc"));
    }

    #[test]
    fn literals_anywhere() {
        let mut red = Redactor::new();
        red.add_literal("planted-secret-value");
        red.add_literal("short");
        assert_eq!(
            red.redact("log: got planted-secret-value from x; short stays"),
            "log: got *** from x; short stays"
        );
        red.add_secret_env([
            ("MY_API_TOKEN".to_string(), "tokentoken".to_string()),
            ("HOME".to_string(), "/home/someone".to_string()),
        ]);
        assert_eq!(
            red.redact("tokentoken in /home/someone"),
            "*** in /home/someone"
        );
    }
}
