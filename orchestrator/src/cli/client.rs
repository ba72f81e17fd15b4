//! The HTTP and WebSocket client of a running orchestrator, and the one place where
//! transport failures and error answers become [`CliError`]s.

use super::error::CliError;
use crate::api_types::ErrorBody;
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Where the orchestrator is and how to authenticate to it; shared by every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// URL of the orchestrator [default: the one `apex up` recorded in the data
    /// directory, else http://127.0.0.1:8080].
    #[arg(long, env = "APEX_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token the server requires [default: the token `apex up` keeps in the data
    /// directory, sent only to the server it recorded there].
    #[arg(
        long,
        env = "APEX_API_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub api_token: Option<String>,
    /// The data directory of a local `apex up`, where its URL and token are found.
    #[arg(
        long,
        env = "APEX_DATA_DIR",
        default_value = ".apex",
        value_name = "DIR"
    )]
    pub data_dir: std::path::PathBuf,
}

/// The server a client command talks to when nothing names one.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

impl Connection {
    /// The server URL and token to use: the ones given, else what a local `apex up`
    /// recorded. Its token goes only to the server it recorded (or, with no record, to a
    /// loopback server), never to a server named elsewhere.
    pub fn resolve(&self) -> (String, Option<String>) {
        let recorded = crate::up::data_dir::recorded(&self.data_dir);
        let server = self
            .server
            .clone()
            .or_else(|| recorded.server.clone())
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let given = self
            .api_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        let local_token = recorded.token.filter(|_| match &recorded.server {
            Some(r) => same(r, &server),
            None => reqwest::Url::parse(&server)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .is_some_and(|h| matches!(h.as_str(), "127.0.0.1" | "localhost" | "[::1]")),
        });
        (server, given.or(local_token))
    }
}

/// A connection that never answers is as good as a dead server; say so in seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Generous, since a submission may carry a large DAG.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A live WebSocket to the orchestrator.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A client of one orchestrator.
pub struct Client {
    http: reqwest::Client,
    /// The server URL without a trailing slash, as the user gave it (for messages).
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the server `conn` names; checks the URL before any request.
    pub fn new(conn: &Connection) -> Result<Self, CliError> {
        let (server, token) = conn.resolve();
        let base = server.trim_end_matches('/').to_owned();
        let invalid = |reason: &str| CliError::InvalidServer {
            url: server.clone(),
            reason: reason.to_owned(),
        };
        let url = reqwest::Url::parse(&base).map_err(|e| invalid(&e.to_string()))?;
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(invalid(&format!("unsupported scheme {other:?}"))),
        }
        // The WebSocket's TLS uses the process's default provider; install ring once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if url.host_str().is_none() {
            return Err(invalid("the URL has no host"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(Self { http, base, token })
    }

    /// The server URL, for messages.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// The failure for an answer that does not have the shape docs/API.md gives it.
    pub fn unexpected(&self, message: String) -> CliError {
        CliError::Server {
            server: self.base.clone(),
            message,
        }
    }

    /// `GET path` (with its query), answered with JSON.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.http.get(self.url(path))).await
    }

    /// `POST path` with a JSON body (or none).
    pub async fn post(&self, path: &str, body: Option<Vec<u8>>) -> Result<Value, CliError> {
        let mut req = self.http.post(self.url(path));
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        self.send(req).await
    }

    /// `POST path` with a JSON body and an `Idempotency-Key`: the server answers a
    /// repeat with the run the first request created, so retrying is safe.
    pub async fn post_idempotent(
        &self,
        path: &str,
        body: Vec<u8>,
        key: &str,
    ) -> Result<Value, CliError> {
        let req = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", key)
            .body(body);
        self.send(req).await
    }

    /// `PUT path` with a JSON body; answers the status too (201 created, 200 replaced).
    pub async fn put(&self, path: &str, body: Vec<u8>) -> Result<(u16, Value), CliError> {
        let req = self
            .http
            .put(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send_for_status(req).await
    }

    /// `DELETE path`; a success has no body (204).
    pub async fn delete(&self, path: &str) -> Result<(), CliError> {
        self.send_for_status(self.http.delete(self.url(path)))
            .await
            .map(|_| ())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, CliError> {
        self.send_for_status(req).await.map(|(_, body)| body)
    }

    /// Sends `req`; a success answers its status and JSON body (`null` when it has none).
    async fn send_for_status(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), CliError> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(&e))?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok((status.as_u16(), Value::Null));
            }
            let body = serde_json::from_slice(&bytes).map_err(|e| CliError::Server {
                server: self.base.clone(),
                message: format!("the answer is not JSON ({e}); is this an Apex server?"),
            })?;
            return Ok((status.as_u16(), body));
        }
        Err(self.error_answer(status.as_u16(), &bytes))
    }

    fn transport_error(&self, e: &reqwest::Error) -> CliError {
        let reason = if e.is_timeout() {
            "no answer in time".to_owned()
        } else {
            innermost(e)
        };
        CliError::Unreachable {
            server: self.base.clone(),
            reason,
        }
    }

    /// The failure an error answer stands for (`{"error": {...}}`, docs/API.md).
    pub fn error_answer(&self, status: u16, body: &[u8]) -> CliError {
        let parsed: Option<ErrorBody> = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| serde_json::from_value(v.get("error")?.clone()).ok());
        let server = self.base.clone();
        let message = parsed
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_else(|| format!("unexpected answer: HTTP {status}"));
        match status {
            401 => CliError::Unauthorized {
                server,
                token_sent: self.token.is_some(),
            },
            403 => CliError::Forbidden { server, message },
            429 => CliError::Throttled { server, message },
            404 => CliError::NotFound {
                server,
                message,
                hint: "check the id; `apex runs` lists recent runs".into(),
            },
            409 => CliError::Conflict(message),
            422 => match parsed {
                Some(error) => CliError::InvalidDag {
                    path: "the submitted file".into(),
                    error,
                },
                None => CliError::BadRequest(message),
            },
            400..=499 => CliError::BadRequest(message),
            502..=504 => CliError::Unavailable { server, message },
            _ => CliError::Server { server, message },
        }
    }

    /// Opens the live stream of one run, resuming after `since` when given.
    pub async fn follow_run(&self, run: &str, since: Option<u64>) -> Result<Socket, CliError> {
        self.open_stream(run, &[], since).await
    }

    /// Opens the live stream of one run, task-level for `tasks` only (all of them when
    /// empty), resuming after `since` when given.
    pub async fn open_stream(
        &self,
        run: &str,
        tasks: &[&str],
        since: Option<u64>,
    ) -> Result<Socket, CliError> {
        let ws_base = match self.base.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => self.base.replacen("http://", "ws://", 1),
        };
        let mut url = format!("{ws_base}/api/v1/ws?run={}", encode(run));
        for t in tasks {
            url.push_str(&format!("&tasks={}", encode(t)));
        }
        if let Some(s) = since {
            url.push_str(&format!("&since={s}"));
        }
        let mut req = url.into_client_request().map_err(|e| self.ws_error(e))?;
        if let Some(t) = &self.token {
            // A header, not `?token=`: the token stays out of proxy and server logs.
            let value = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                CliError::BadRequest(
                    "the API token contains characters a header cannot carry".into(),
                )
            })?;
            req.headers_mut().insert("authorization", value);
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(req)).await {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(e)) => Err(self.ws_error(e)),
            Err(_) => Err(CliError::Unreachable {
                server: self.base.clone(),
                reason: "no answer in time".into(),
            }),
        }
    }

    fn ws_error(&self, e: tungstenite::Error) -> CliError {
        match e {
            tungstenite::Error::Http(resp) => {
                let status = resp.status();
                let body = resp.body().as_deref().unwrap_or_default();
                self.error_answer(status.as_u16(), body)
            }
            tungstenite::Error::Io(io) => CliError::Unreachable {
                server: self.base.clone(),
                reason: innermost(&io),
            },
            other => CliError::Unreachable {
                server: self.base.clone(),
                reason: other.to_string(),
            },
        }
    }
}

/// The deepest cause of a transport error, the part that says what actually happened
/// ("Connection refused"), without the OS error number.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_owned()
}

/// Percent-encodes a path segment or query value (ids are `[A-Za-z0-9_.:-]` in practice,
/// but an id typed by a person may be anything).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
