//! The admin status page, `GET /admin/status`: endpoints, their user endpoints, recent task
//! counts and recent errors, rendered on the server as one small HTML page (no script).
//!
//! Access: only with the admin token of the service configuration (`--admin-token` /
//! `GCRS_ADMIN_TOKEN`), sent as `Authorization: Bearer <token>` or as the password of HTTP
//! Basic authentication (any user name), so a browser can open the page after its password
//! prompt. Without a configured token the page does not exist (404).
//!
//! Everything shown comes from the shared database, so every replica shows the same page.
//! Every value that came from a client (endpoint names, identities, error texts) is
//! HTML-escaped; the response forbids scripts through its Content-Security-Policy as well.
//! Task outcomes of high-assurance endpoints are counted but their texts are not shown.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::AppState;
use crate::error::StoreError;
use crate::routes::is_online;
use crate::store::now_f64;

/// How far back "recent" reaches for task counts and failed tasks, seconds.
const RECENT_S: f64 = 24.0 * 3600.0;
/// Rows per error list.
const MAX_ERRORS: i64 = 20;
/// User endpoints listed (most recently active first).
const MAX_UEPS: i64 = 500;
/// Longest error text shown, characters.
const MAX_TEXT: usize = 300;

/// Escape text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The credential an `Authorization` header carries: a bearer token, or the password of
/// HTTP Basic.
fn presented_secret(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.to_string())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        text.split_once(':').map(|(_, pass)| pass.to_string())
    } else {
        None
    }
}

/// Compare through digests so the comparison time does not depend on the token's prefix.
fn is_admin(headers: &HeaderMap, token: &str) -> bool {
    presented_secret(headers)
        .is_some_and(|s| Sha256::digest(s.as_bytes()) == Sha256::digest(token.as_bytes()))
}

/// `GET /admin/status`.
pub async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = state.cfg.admin_token.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !is_admin(&headers, token) {
        let mut r = (StatusCode::UNAUTHORIZED, "admin token required\n").into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"gc-service admin\", charset=\"UTF-8\""),
        );
        return r;
    }
    let now = now_f64();
    let view = match load(&state, now).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "status page: database query failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is not available\n",
            )
                .into_response();
        }
    };
    let mut r = Html(render(&view, now)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    received: i64,
    succeeded: i64,
    failed: i64,
}

#[derive(Debug)]
struct EndpointView {
    id: String,
    name: String,
    display_name: String,
    owner: String,
    online: bool,
    last_heartbeat: Option<f64>,
    high_assurance: bool,
    public: bool,
    recent: Counts,
    pending: i64,
    ueps: Vec<UepView>,
}

#[derive(Debug)]
struct UepView {
    id: String,
    user: String,
    state: &'static str,
    last_heartbeat: Option<f64>,
    pending: i64,
    error: Option<String>,
}

#[derive(Debug)]
struct ErrorView {
    at: Option<f64>,
    endpoint: String,
    what: String,
    text: String,
}

#[derive(Debug)]
struct View {
    endpoints: Vec<EndpointView>,
    last_hour: Counts,
    last_day: Counts,
    pending: i64,
    errors: Vec<ErrorView>,
}

fn uep_state(
    last_hb: Option<f64>,
    period: Option<f64>,
    active: bool,
    start_sent: Option<f64>,
    error_at: Option<f64>,
    now: f64,
) -> &'static str {
    let hb = last_hb.unwrap_or(f64::NEG_INFINITY);
    if error_at.is_some_and(|e| e >= hb) && start_sent.is_none_or(|s| error_at >= Some(s)) {
        return "failed";
    }
    if is_online(last_hb, period, now) {
        return if active { "running" } else { "stopping" };
    }
    match start_sent {
        Some(s) if s > hb && now - s < 120.0 => "starting",
        _ => "stopped",
    }
}

/// The last non-empty line of a traceback-like text, shortened.
fn summary(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.chars().count() > MAX_TEXT {
        let cut: String = line.chars().take(MAX_TEXT).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

async fn load(state: &AppState, now: f64) -> Result<View, StoreError> {
    let pool = state.store.pool();
    let users: HashMap<String, String> =
        sqlx::query("SELECT client_id, username FROM identities WHERE is_primary = 1")
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("client_id")?, r.try_get("username")?)))
            .collect::<Result<_, StoreError>>()?;
    let user_of = |client: &str| users.get(client).cloned().unwrap_or_else(|| client.into());

    // Per-endpoint counts over the recent window, aggregated by the database (the window
    // can hold many tasks); the site-wide numbers are their sums.
    let since = now - RECENT_S;
    let mut recent: HashMap<String, Counts> = HashMap::new();
    let mut last_hour = Counts::default();
    let mut last_day = Counts::default();
    for r in sqlx::query(
        "SELECT endpoint_id, COUNT(*) AS received, \
         COALESCE(SUM(CASE WHEN completion_t IS NOT NULL AND status = 'success' THEN 1 ELSE 0 END), 0) AS succeeded, \
         COALESCE(SUM(CASE WHEN completion_t IS NOT NULL AND status <> 'success' THEN 1 ELSE 0 END), 0) AS failed, \
         COALESCE(SUM(CASE WHEN created_at >= $2 THEN 1 ELSE 0 END), 0) AS received_hour \
         FROM tasks WHERE created_at >= $1 GROUP BY endpoint_id",
    )
    .bind(since)
    .bind(now - 3600.0)
    .fetch_all(pool)
    .await?
    {
        let c = Counts {
            received: r.try_get("received")?,
            succeeded: r.try_get("succeeded")?,
            failed: r.try_get("failed")?,
        };
        last_day.received += c.received;
        last_day.succeeded += c.succeeded;
        last_day.failed += c.failed;
        last_hour.received += r.try_get::<i64, _>("received_hour")?;
        recent.insert(r.try_get("endpoint_id")?, c);
    }

    let mut pending_by_ep: HashMap<String, i64> = HashMap::new();
    let mut pending_by_uep: HashMap<String, i64> = HashMap::new();
    for r in sqlx::query(
        "SELECT endpoint_id, uep_id, COUNT(*) AS n FROM tasks WHERE completion_t IS NULL \
         GROUP BY endpoint_id, uep_id",
    )
    .fetch_all(pool)
    .await?
    {
        let n: i64 = r.try_get("n")?;
        *pending_by_ep.entry(r.try_get("endpoint_id")?).or_default() += n;
        *pending_by_uep.entry(r.try_get("uep_id")?).or_default() += n;
    }
    let pending = pending_by_ep.values().sum();

    let mut ueps_by_ep: HashMap<String, Vec<UepView>> = HashMap::new();
    for r in sqlx::query(
        "SELECT id, mep_id, client_id, start_sent_at, last_heartbeat, heartbeat_period, active, \
         error, error_at FROM user_endpoints \
         ORDER BY COALESCE(last_heartbeat, start_sent_at, 0) DESC, id LIMIT $1",
    )
    .bind(MAX_UEPS)
    .fetch_all(pool)
    .await?
    {
        let id: String = r.try_get("id")?;
        let last: Option<f64> = r.try_get("last_heartbeat")?;
        let error_at: Option<f64> = r.try_get("error_at")?;
        let st = uep_state(
            last,
            r.try_get("heartbeat_period")?,
            r.try_get::<i64, _>("active")? != 0,
            r.try_get("start_sent_at")?,
            error_at,
            now,
        );
        let error: Option<String> = r.try_get("error")?;
        ueps_by_ep
            .entry(r.try_get("mep_id")?)
            .or_default()
            .push(UepView {
                pending: pending_by_uep.get(&id).copied().unwrap_or(0),
                id,
                user: user_of(&r.try_get::<String, _>("client_id")?),
                state: st,
                last_heartbeat: last,
                error: if st == "failed" {
                    error.as_deref().map(summary)
                } else {
                    None
                },
            });
    }

    let mut endpoints = Vec::new();
    let mut names: HashMap<String, (String, bool)> = HashMap::new();
    for r in sqlx::query(
        "SELECT id, owner_id, name, display_name, public, high_assurance, last_heartbeat, \
         heartbeat_period FROM endpoints ORDER BY name, id",
    )
    .fetch_all(pool)
    .await?
    {
        let id: String = r.try_get("id")?;
        let last: Option<f64> = r.try_get("last_heartbeat")?;
        let ha = r.try_get::<i64, _>("high_assurance")? != 0;
        let name: String = r.try_get("name")?;
        names.insert(id.clone(), (name.clone(), ha));
        endpoints.push(EndpointView {
            online: is_online(last, r.try_get("heartbeat_period")?, now),
            last_heartbeat: last,
            owner: user_of(&r.try_get::<String, _>("owner_id")?),
            display_name: r.try_get("display_name")?,
            high_assurance: ha,
            public: r.try_get::<i64, _>("public")? != 0,
            recent: recent.get(&id).copied().unwrap_or_default(),
            pending: pending_by_ep.get(&id).copied().unwrap_or(0),
            ueps: ueps_by_ep.remove(&id).unwrap_or_default(),
            name,
            id,
        });
    }
    let ep_label = |id: &str| {
        names
            .get(id)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| id.to_string())
    };

    let mut errors = Vec::new();
    for r in sqlx::query(
        "SELECT id, mep_id, client_id, error, error_at FROM user_endpoints \
         WHERE error IS NOT NULL ORDER BY error_at DESC LIMIT $1",
    )
    .bind(MAX_ERRORS)
    .fetch_all(pool)
    .await?
    {
        let mep: String = r.try_get("mep_id")?;
        let uep: String = r.try_get("id")?;
        errors.push(ErrorView {
            at: r.try_get("error_at")?,
            endpoint: ep_label(&mep),
            what: format!(
                "user endpoint {uep} ({}) failed to start",
                user_of(&r.try_get::<String, _>("client_id")?)
            ),
            text: summary(&r.try_get::<Option<String>, _>("error")?.unwrap_or_default()),
        });
    }
    for r in sqlx::query(
        "SELECT id, endpoint_id, completion_t, exception FROM tasks \
         WHERE status = 'failed' AND created_at >= $1 ORDER BY completion_t DESC LIMIT $2",
    )
    .bind(since)
    .bind(MAX_ERRORS)
    .fetch_all(pool)
    .await?
    {
        let ep: String = r.try_get("endpoint_id")?;
        let ha = names.get(&ep).is_some_and(|(_, ha)| *ha);
        let task: String = r.try_get("id")?;
        errors.push(ErrorView {
            at: r.try_get("completion_t")?,
            endpoint: ep_label(&ep),
            what: format!("task {task} failed"),
            text: if ha {
                "(high-assurance endpoint: not shown)".into()
            } else {
                summary(
                    &r.try_get::<Option<String>, _>("exception")?
                        .unwrap_or_default(),
                )
            },
        });
    }
    errors.sort_by(|a, b| b.at.unwrap_or(0.0).total_cmp(&a.at.unwrap_or(0.0)));
    errors.truncate(MAX_ERRORS as usize);

    Ok(View {
        endpoints,
        last_hour,
        last_day,
        pending,
        errors,
    })
}

/// "5 s ago" with the absolute time as its tooltip, as HTML.
fn when(t: Option<f64>, now: f64) -> String {
    let Some(t) = t else {
        return "never".into();
    };
    let ago = (now - t).max(0.0);
    let age = if ago < 120.0 {
        format!("{ago:.0} s ago")
    } else if ago < 7200.0 {
        format!("{:.0} min ago", ago / 60.0)
    } else if ago < 172_800.0 {
        format!("{:.0} h ago", ago / 3600.0)
    } else {
        format!("{:.0} days ago", ago / 86400.0)
    };
    match chrono::DateTime::from_timestamp(t as i64, 0) {
        Some(d) => format!(
            "<span class=\"age\" title=\"{}\">{}</span>",
            d.format("%Y-%m-%d %H:%M:%S UTC"),
            escape(&age)
        ),
        None => escape(&age),
    }
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f6f8;color:#1d2733}
header{background:#1d3557;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;font-size:13px;opacity:.8}
main{padding:18px 28px}
section{background:#fff;border:1px solid #d8dee4;border-radius:6px;margin-bottom:18px;padding:12px 16px}
h2{font-size:17px;margin:4px 0 10px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:10px 16px;min-width:130px}
.card b{display:block;font-size:24px}.card span{font-size:12px;color:#57606a}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
tr.uep td{background:#fbfcfd;font-size:12px}tr.uep td:first-child{padding-left:28px}
code{font-size:12px;color:#57606a}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;font-weight:600;color:#fff}
.online,.running{background:#2da44e}.offline,.stopped{background:#8c959f}
.failed{background:#cf222e}.starting,.stopping{background:#bf8700}
.num{text-align:right;font-variant-numeric:tabular-nums}
.err{color:#a40e26}.muted{color:#57606a}.age{white-space:nowrap}
";

fn badge(state: &str) -> String {
    format!("<span class=\"badge {0}\">{0}</span>", escape(state))
}

fn render(v: &View, now: f64) -> String {
    let mut h = String::with_capacity(8192);
    let online = v.endpoints.iter().filter(|e| e.online).count();
    let running: usize = v
        .endpoints
        .iter()
        .flat_map(|e| &e.ueps)
        .filter(|u| u.state == "running")
        .count();
    let generated = chrono::DateTime::from_timestamp(now as i64, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"30\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>gc-service status</title><style>{STYLE}</style></head><body>\
         <header><h1>gc-service status</h1><p>Generated {generated} · version {} · \
         refreshes every 30 s</p></header><main>",
        escape(env!("CARGO_PKG_VERSION"))
    );
    let _ = write!(h, "<div class=\"cards\" id=\"summary\">");
    for (value, label) in [
        (
            format!("{online} / {}", v.endpoints.len()),
            "endpoints online",
        ),
        (running.to_string(), "user endpoints running"),
        (
            v.last_hour.received.to_string(),
            "tasks submitted, last hour",
        ),
        (v.last_day.succeeded.to_string(), "succeeded, last 24 h"),
        (v.last_day.failed.to_string(), "failed, last 24 h"),
        (v.pending.to_string(), "tasks waiting for a result"),
    ] {
        let _ = write!(
            h,
            "<div class=\"card\"><b>{}</b><span>{}</span></div>",
            escape(&value),
            escape(label)
        );
    }
    let _ = write!(h, "</div><br>");

    let _ = write!(
        h,
        "<section id=\"endpoints\"><h2>Endpoints and their user endpoints</h2>"
    );
    if v.endpoints.is_empty() {
        let _ = write!(h, "<p class=\"muted\">No endpoint is registered.</p>");
    } else {
        let _ = write!(
            h,
            "<table><thead><tr><th>Endpoint</th><th>State</th><th>Owner / user</th>\
             <th>Last heartbeat</th><th class=\"num\">Tasks 24 h</th>\
             <th class=\"num\">Succeeded</th><th class=\"num\">Failed</th>\
             <th class=\"num\">Waiting</th></tr></thead><tbody>"
        );
        for e in &v.endpoints {
            let mut flags = Vec::new();
            if e.high_assurance {
                flags.push("high assurance");
            }
            if e.public {
                flags.push("public");
            }
            let _ = write!(
                h,
                "<tr class=\"ep\"><td><b>{}</b>{}<br><code>{}</code>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&e.name),
                if e.display_name.is_empty() || e.display_name == e.name {
                    String::new()
                } else {
                    format!(" <span class=\"muted\">{}</span>", escape(&e.display_name))
                },
                escape(&e.id),
                if flags.is_empty() {
                    String::new()
                } else {
                    format!(" <span class=\"muted\">({})</span>", flags.join(", "))
                },
                badge(if e.online { "online" } else { "offline" }),
                escape(&e.owner),
                when(e.last_heartbeat, now),
                e.recent.received,
                e.recent.succeeded,
                e.recent.failed,
                e.pending,
            );
            for u in &e.ueps {
                let _ = write!(
                    h,
                    "<tr class=\"uep\"><td>user endpoint <code>{}</code>{}</td><td>{}</td>\
                     <td>{}</td><td>{}</td><td></td><td></td><td></td>\
                     <td class=\"num\">{}</td></tr>",
                    escape(&u.id),
                    match &u.error {
                        Some(err) => format!("<br><span class=\"err\">{}</span>", escape(err)),
                        None => String::new(),
                    },
                    badge(u.state),
                    escape(&u.user),
                    when(u.last_heartbeat, now),
                    u.pending,
                );
            }
        }
        let _ = write!(h, "</tbody></table>");
    }
    let _ = write!(h, "</section>");

    let _ = write!(h, "<section id=\"errors\"><h2>Recent errors</h2>");
    if v.errors.is_empty() {
        let _ = write!(h, "<p class=\"muted\">No errors in the last 24 hours.</p>");
    } else {
        let _ = write!(
            h,
            "<table><thead><tr><th>When</th><th>Endpoint</th><th>What</th><th>Message</th>\
             </tr></thead><tbody>"
        );
        for e in &v.errors {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
                when(e.at, now),
                escape(&e.endpoint),
                escape(&e.what),
                escape(&e.text)
            );
        }
        let _ = write!(h, "</tbody></table>");
    }
    let _ = write!(h, "</section></main></body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn admin_token_by_bearer_or_basic_password() {
        let mut h = HeaderMap::new();
        assert!(!is_admin(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(is_admin(&h, "s3cret"));
        assert!(!is_admin(&h, "s3cret2"));
        let basic = base64::engine::general_purpose::STANDARD.encode("admin:s3cret");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {basic}")).expect("header"),
        );
        assert!(is_admin(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(!is_admin(&h, "s3cret"));
    }

    #[test]
    fn user_endpoint_states() {
        let now = 1000.0;
        assert_eq!(
            uep_state(Some(995.0), Some(5.0), true, Some(990.0), None, now),
            "running"
        );
        assert_eq!(
            uep_state(Some(500.0), Some(5.0), true, Some(490.0), None, now),
            "stopped"
        );
        assert_eq!(
            uep_state(None, None, false, Some(990.0), None, now),
            "starting"
        );
        assert_eq!(
            uep_state(None, None, false, Some(990.0), Some(992.0), now),
            "failed"
        );
        // Started again after a failure: no longer failed.
        assert_eq!(
            uep_state(Some(998.0), Some(5.0), true, Some(996.0), Some(900.0), now),
            "running"
        );
    }

    #[test]
    fn rendering_escapes_client_supplied_names_and_errors() {
        let v = View {
            endpoints: vec![EndpointView {
                id: "e1".into(),
                name: "<img src=x onerror=alert(1)>".into(),
                display_name: "\"quoted\"".into(),
                owner: "alice@example.org".into(),
                online: true,
                last_heartbeat: Some(99.0),
                high_assurance: false,
                public: false,
                recent: Counts {
                    received: 3,
                    succeeded: 2,
                    failed: 1,
                },
                pending: 0,
                ueps: vec![UepView {
                    id: "u1".into(),
                    user: "<b>bob</b>".into(),
                    state: "failed",
                    last_heartbeat: None,
                    pending: 2,
                    error: Some("<script>x</script>".into()),
                }],
            }],
            last_hour: Counts::default(),
            last_day: Counts::default(),
            pending: 2,
            errors: vec![],
        };
        let html = render(&v, 100.0);
        assert!(!html.contains("<img"));
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>bob"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("&quot;quoted&quot;"));
        assert!(html.contains("No errors in the last 24 hours."));
    }

    #[test]
    fn summary_takes_the_last_line_and_shortens() {
        assert_eq!(
            summary("Traceback (most recent call last):\n  File x\nValueError: bad\n\n"),
            "ValueError: bad"
        );
        assert_eq!(summary(&"y".repeat(400)).chars().count(), MAX_TEXT + 1);
    }
}
