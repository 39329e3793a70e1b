//! A client of the llmtui daemon (local language models), async on tokio.
//!
//! Over TCP it uses reqwest; on Unix it can talk to the daemon's private socket through
//! hyper (the default when no host is given). Streaming calls return `Stream`s of the
//! daemon's NDJSON lines, parsed into the serde types below; dropping a stream closes the
//! connection and the daemon stops the work. Errors the daemon answers carry its `code`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The crate's version; the daemon's `/api/version` answers the same for a matching release.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

// -- errors ------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The daemon answered with an error: its HTTP status, the API's `code`, its message.
    #[error("{message} ({code}, HTTP {status})")]
    Api { status: u16, code: String, message: String },
    /// Nothing answered at the address (the daemon is not running, or the socket is gone).
    #[error("cannot reach the llmtui daemon at {address}: {reason} (start it with: llm daemon start, or llm serve --port 11434)")]
    Unavailable { address: String, reason: String },
    /// The connection broke during an answer.
    #[error("connection to the daemon failed: {0}")]
    Transport(String),
    /// The daemon's answer was not what the API promises.
    #[error("unexpected answer from the daemon: {0}")]
    Decode(#[from] serde_json::Error),
}

impl Error {
    /// The API's error code (`model_not_found`, `forbidden`, `invalid_input`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            Error::Unavailable { .. } => Some("daemon_unavailable"),
            _ => None,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn from_body(status: u16, body: &[u8]) -> Error {
        let mut code = match status {
            404 => "not_found",
            401 | 403 => "forbidden",
            _ => "error",
        }
        .to_string();
        let mut message = format!("HTTP {status}");
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => {
                match map.get("error") {
                    Some(Value::String(s)) => message = s.clone(),
                    Some(Value::Object(e)) => {
                        if let Some(Value::String(s)) = e.get("message") {
                            message = s.clone();
                        }
                        if let Some(Value::String(c)) = e.get("code") {
                            code = c.clone();
                        }
                    }
                    _ => {}
                }
                if let Some(Value::String(c)) = map.get("code") {
                    code = c.clone();
                }
            }
            _ if !body.is_empty() => {
                message = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
            }
            _ => {}
        }
        Error::Api { status, code, message }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

// -- wire types (the Ollama shapes and llmtui's /api/x) -----------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct GenerateRequest {
    pub model: String,
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Sampling options: `{"temperature": 0.2, "num_predict": 64, "seed": 1}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
    /// `"json"`, or a JSON schema to follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<bool>,
}

impl GenerateRequest {
    pub fn new(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        GenerateRequest { model: model.into(), prompt: prompt.into(), ..Default::default() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: content.into(), ..Default::default() }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Message::new("user", content)
    }
    pub fn system(content: impl Into<String>) -> Self {
        Message::new("system", content)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
}

impl ChatRequest {
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequest { model: model.into(), messages, ..Default::default() }
    }
}

/// Counters on the last part of a reply (durations in nanoseconds).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Stats {
    #[serde(default)]
    pub done: bool,
    pub done_reason: Option<String>,
    pub total_duration: Option<u64>,
    pub load_duration: Option<u64>,
    pub prompt_eval_count: Option<u64>,
    pub prompt_eval_duration: Option<u64>,
    pub eval_count: Option<u64>,
    pub eval_duration: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct GenerateResponse {
    pub model: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub response: String,
    pub thinking: Option<String>,
    #[serde(flatten)]
    pub stats: Stats,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ChatResponse {
    pub model: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub message: Message,
    #[serde(flatten)]
    pub stats: Stats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedResponse {
    pub model: String,
    pub embeddings: Vec<Vec<f32>>,
    pub total_duration: Option<u64>,
    pub prompt_eval_count: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ModelDetails {
    pub format: Option<String>,
    pub family: Option<String>,
    pub families: Option<Vec<String>>,
    pub parameter_size: Option<String>,
    pub quantization_level: Option<String>,
    pub parent_model: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub model: String,
    pub modified_at: String,
    pub size: u64,
    pub digest: String,
    #[serde(default)]
    pub details: ModelDetails,
    pub expires_at: Option<String>,
    pub size_vram: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShowResponse {
    #[serde(default)]
    pub details: ModelDetails,
    pub template: Option<String>,
    pub parameters: Option<String>,
    pub model_info: Option<BTreeMap<String, Value>>,
    pub capabilities: Option<Vec<String>>,
}

/// A pull's (or a RAG add's) progress line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressResponse {
    pub status: String,
    pub digest: Option<String>,
    pub total: Option<u64>,
    pub completed: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RagDocument {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Collection {
    pub name: String,
    pub model: Option<String>,
    /// Counts, dimensions and (for one collection) its files: whatever the daemon tells.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RagChunk {
    pub text: String,
    pub citation: String,
    pub score: Option<f64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One streamed part of a RAG query: the retrieved chunks first, then the answer's text.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RagQueryPart {
    pub chunks: Option<Vec<RagChunk>>,
    pub message: Option<Message>,
    #[serde(default)]
    pub done: bool,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RagQuery {
    pub query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
}

// -- transport ---------------------------------------------------------------------------------

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// A stream of parsed parts; drop it to stop the request.
pub type PartStream<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send>>;

#[derive(Clone, Debug)]
enum Transport {
    Tcp { base: String, http: reqwest::Client },
    Unix { path: PathBuf },
}

/// The daemon's client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    transport: Transport,
    api_key: Option<String>,
}

/// Where the daemon's socket is when nothing is configured (what the CLI uses).
pub fn default_socket_path() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("LLMTUI_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home).join("run").join("llmtui.sock"));
    }
    if cfg!(windows) {
        return None; // Windows: TCP only (see docs/sdk.md)
    }
    if cfg!(target_os = "macos") {
        let home = std::env::var_os("HOME")?;
        return Some(PathBuf::from(home).join("Library/Caches/TemporaryItems/llmtui/llmtui.sock"));
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)?;
    Some(runtime.join("llmtui").join("llmtui.sock"))
}

impl Client {
    /// A client of the daemon's TCP address (`http://127.0.0.1:11434`).
    pub fn new(host: &str) -> Client {
        let base = if host.starts_with("http://") || host.starts_with("https://") {
            host.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", host.trim_end_matches('/'))
        };
        Client { transport: Transport::Tcp { base, http: reqwest::Client::new() }, api_key: None }
    }

    /// A client of the daemon's Unix socket.
    pub fn unix(path: impl Into<PathBuf>) -> Client {
        Client { transport: Transport::Unix { path: path.into() }, api_key: None }
    }

    /// Send `Authorization: Bearer KEY` (a TCP daemon started with an API key).
    pub fn with_api_key(mut self, key: impl Into<String>) -> Client {
        let key = key.into();
        self.api_key = if key.is_empty() { None } else { Some(key) };
        self
    }

    /// `LLMTUI_HOST` (and `LLMTUI_API_KEY`), else `LLMTUI_SOCKET`, else the default socket.
    pub fn from_env() -> Result<Client> {
        let key = std::env::var("LLMTUI_API_KEY").unwrap_or_default();
        if let Ok(host) = std::env::var("LLMTUI_HOST") {
            if !host.is_empty() {
                return Ok(Client::new(&host).with_api_key(key));
            }
        }
        let path = std::env::var_os("LLMTUI_SOCKET")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(default_socket_path);
        match path {
            Some(p) => Ok(Client::unix(p).with_api_key(key)),
            None => Ok(Client::new("http://127.0.0.1:11434").with_api_key(key)),
        }
    }

    fn address(&self) -> String {
        match &self.transport {
            Transport::Tcp { base, .. } => base.clone(),
            Transport::Unix { path } => path.display().to_string(),
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<(u16, ByteStream)> {
        match &self.transport {
            Transport::Tcp { base, http } => {
                let method = reqwest::Method::from_bytes(method.as_bytes())
                    .map_err(|e| Error::Transport(e.to_string()))?;
                let mut req = http.request(method, format!("{base}{path}"));
                if let Some(key) = &self.api_key {
                    req = req.bearer_auth(key);
                }
                if let Some(b) = body {
                    req = req.header("content-type", "application/json").body(b);
                }
                let resp = req.send().await.map_err(|e| {
                    if e.is_connect() {
                        Error::Unavailable { address: self.address(), reason: e.to_string() }
                    } else {
                        Error::Transport(e.to_string())
                    }
                })?;
                let status = resp.status().as_u16();
                let bytes = resp.bytes_stream().map(|r| r.map_err(|e| Error::Transport(e.to_string())));
                Ok((status, Box::pin(bytes)))
            }
            Transport::Unix { path: sock } => {
                let stream = tokio::net::UnixStream::connect(sock)
                    .await
                    .map_err(|e| Error::Unavailable { address: self.address(), reason: e.to_string() })?;
                let (mut sender, conn) = hyper::client::conn::handshake(stream)
                    .await
                    .map_err(|e| Error::Transport(e.to_string()))?;
                // The connection's driver ends when the response is done or dropped, which
                // closes the socket: that is how the daemon learns to stop generating.
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                let mut req = hyper::Request::builder().method(method).uri(path).header("host", "llmtui");
                if let Some(key) = &self.api_key {
                    req = req.header("authorization", format!("Bearer {key}"));
                }
                let req = match body {
                    Some(b) => req
                        .header("content-type", "application/json")
                        .header("content-length", b.len())
                        .body(hyper::Body::from(b)),
                    None => req.body(hyper::Body::empty()),
                }
                .map_err(|e| Error::Transport(e.to_string()))?;
                let resp = sender.send_request(req).await.map_err(|e| Error::Transport(e.to_string()))?;
                let status = resp.status().as_u16();
                let body = resp.into_body().map(|r| r.map_err(|e| Error::Transport(e.to_string())));
                Ok((status, Box::pin(body)))
            }
        }
    }

    async fn read_all(mut body: ByteStream) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    /// One request with a JSON body (or none) and its JSON answer.
    pub async fn request<T: DeserializeOwned>(&self, method: &str, path: &str, body: Option<&Value>) -> Result<T> {
        let payload = body.map(serde_json::to_vec).transpose()?;
        let (status, stream) = self.send(method, path, payload).await?;
        let bytes = Self::read_all(stream).await?;
        if status >= 400 {
            return Err(Error::from_body(status, &bytes));
        }
        let bytes = if bytes.is_empty() { b"null".to_vec() } else { bytes };
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// A streaming POST: the answer's NDJSON lines, parsed. Dropping the stream ends it.
    pub async fn stream<T: DeserializeOwned + Send + 'static>(&self, path: &str, body: &Value) -> Result<PartStream<T>> {
        let (status, bytes) = self.send("POST", path, Some(serde_json::to_vec(body)?)).await?;
        if status >= 400 {
            let all = Self::read_all(bytes).await?;
            return Err(Error::from_body(status, &all));
        }
        let lines = stream::unfold((BytesMut::new(), Some(bytes)),
            move |(mut buf, mut body)| async move {
                loop {
                    if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line = buf.split_to(pos + 1);
                        let text = &line[..line.len() - 1];
                        if text.iter().all(|b| b.is_ascii_whitespace()) {
                            continue;
                        }
                        return Some((parse_part::<T>(text, status), (buf, body)));
                    }
                    match body.as_mut() {
                        Some(b) => match b.next().await {
                            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                            Some(Err(e)) => return Some((Err(e), (buf, None))),
                            None => {
                                if buf.iter().all(|b| b.is_ascii_whitespace()) {
                                    return None;
                                }
                                let rest = buf.split();
                                return Some((parse_part::<T>(&rest, status), (buf, None)));
                            }
                        },
                        None => return None,
                    }
                }
            });
        Ok(Box::pin(lines))
    }

    // ---- generation ----

    /// Stream a completion.
    pub async fn generate(&self, req: GenerateRequest) -> Result<PartStream<GenerateResponse>> {
        let mut body = serde_json::to_value(req)?;
        body["stream"] = Value::Bool(true);
        self.stream("/api/generate", &body).await
    }

    /// A whole completion at once.
    pub async fn generate_once(&self, req: GenerateRequest) -> Result<GenerateResponse> {
        let mut body = serde_json::to_value(req)?;
        body["stream"] = Value::Bool(false);
        self.request("POST", "/api/generate", Some(&body)).await
    }

    /// Stream a chat reply.
    pub async fn chat(&self, req: ChatRequest) -> Result<PartStream<ChatResponse>> {
        let mut body = serde_json::to_value(req)?;
        body["stream"] = Value::Bool(true);
        self.stream("/api/chat", &body).await
    }

    /// A whole chat reply at once.
    pub async fn chat_once(&self, req: ChatRequest) -> Result<ChatResponse> {
        let mut body = serde_json::to_value(req)?;
        body["stream"] = Value::Bool(false);
        self.request("POST", "/api/chat", Some(&body)).await
    }

    /// Vectors for the texts.
    pub async fn embed(&self, model: &str, input: Vec<String>) -> Result<EmbedResponse> {
        let body = serde_json::json!({"model": model, "input": input});
        self.request("POST", "/api/embed", Some(&body)).await
    }

    // ---- models ----

    pub async fn list(&self) -> Result<Vec<ModelInfo>> {
        let v: Models = self.request("GET", "/api/tags", None).await?;
        Ok(v.models)
    }

    pub async fn ps(&self) -> Result<Vec<ModelInfo>> {
        let v: Models = self.request("GET", "/api/ps", None).await?;
        Ok(v.models)
    }

    pub async fn show(&self, model: &str) -> Result<ShowResponse> {
        self.request("POST", "/api/show", Some(&serde_json::json!({"model": model}))).await
    }

    /// Pull a model (catalog name, URL or hf://ORG/REPO/FILE), streaming its progress.
    pub async fn pull(&self, model: &str) -> Result<PartStream<ProgressResponse>> {
        self.stream("/api/pull", &serde_json::json!({"model": model, "stream": true})).await
    }

    pub async fn delete(&self, model: &str) -> Result<()> {
        let _: Value = self.request("DELETE", "/api/delete", Some(&serde_json::json!({"model": model}))).await?;
        Ok(())
    }

    pub async fn copy(&self, source: &str, destination: &str) -> Result<()> {
        let body = serde_json::json!({"source": source, "destination": destination});
        let _: Value = self.request("POST", "/api/copy", Some(&body)).await?;
        Ok(())
    }

    pub async fn version(&self) -> Result<String> {
        let v: VersionResponse = self.request("GET", "/api/version", None).await?;
        Ok(v.version)
    }

    // ---- RAG collections ----

    pub async fn collections(&self) -> Result<Vec<Collection>> {
        let v: Collections = self.request("GET", "/api/x/rag", None).await?;
        Ok(v.collections)
    }

    pub async fn collection(&self, name: &str) -> Result<Collection> {
        self.request("GET", &format!("/api/x/rag/{}", path_part(name)), None).await
    }

    pub async fn delete_collection(&self, name: &str) -> Result<()> {
        let _: Value = self.request("DELETE", &format!("/api/x/rag/{}", path_part(name)), None).await?;
        Ok(())
    }

    /// Add documents to a collection (made on first use), streaming progress.
    pub async fn add_documents(&self, name: &str, documents: Vec<RagDocument>) -> Result<PartStream<ProgressResponse>> {
        let body = serde_json::json!({"documents": documents, "stream": true});
        self.stream(&format!("/api/x/rag/{}/add", path_part(name)), &body).await
    }

    /// Search a collection; with `answer` the chat model answers from the chunks.
    pub async fn query(&self, name: &str, query: RagQuery) -> Result<PartStream<RagQueryPart>> {
        let body = serde_json::to_value(query)?;
        self.stream(&format!("/api/x/rag/{}/query", path_part(name)), &body).await
    }
}

fn parse_part<T: DeserializeOwned>(line: &[u8], status: u16) -> Result<T> {
    let value: Value = serde_json::from_slice(line)?;
    if let Some(err) = value.get("error") {
        if !err.is_null() {
            // An error in the middle of a stream.
            return Err(Error::from_body(if status >= 400 { status } else { 500 }, line));
        }
    }
    Ok(serde_json::from_value(value)?)
}

/// Collection names are letters, digits, '-', '_' and '.': percent-encode anything else.
fn path_part(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Deserialize)]
struct Models {
    models: Vec<ModelInfo>,
}

#[derive(Deserialize)]
struct Collections {
    collections: Vec<Collection>,
}

#[derive(Deserialize)]
struct VersionResponse {
    version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_keep_the_code() {
        let e = Error::from_body(404, br#"{"error": "model 'x' not found", "code": "model_not_found"}"#);
        assert_eq!(e.code(), Some("model_not_found"));
        assert_eq!(e.status(), Some(404));
        let e = Error::from_body(400, br#"{"error": {"message": "bad", "code": "invalid_request_error"}}"#);
        assert_eq!(e.code(), Some("invalid_request_error"));
        let e = Error::from_body(502, b"upstream down");
        assert_eq!(e.to_string(), "upstream down (error, HTTP 502)");
    }

    #[test]
    fn collection_names_are_encoded() {
        assert_eq!(path_part("my docs/x"), "my%20docs%2Fx");
        assert_eq!(path_part("notes-1.v2"), "notes-1.v2");
    }
}
