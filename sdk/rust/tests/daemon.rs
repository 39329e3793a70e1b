//! The Rust SDK against a real `llm serve`, started here by tests/sdk_daemon.py (a free
//! 127.0.0.1 port, an API key, the real tiny models), over TCP and the Unix socket.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::StreamExt;
use llmtui::{ChatRequest, Client, Error, GenerateRequest, Message, RagDocument, RagQuery};
use serde_json::{json, Value};

struct Daemon {
    info: Value,
    _child: Child, // its stdin closes when this test process exits: the helper then stops
}

/// This crate's folder, read when the test runs (cargo sets it for `cargo test`): a test
/// binary reused from a shared target folder may have been built in another checkout,
/// and `env!` would point there.
fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn root() -> PathBuf {
    crate_dir().join("../..").canonicalize().unwrap()
}

fn daemon() -> &'static Value {
    static D: OnceLock<Daemon> = OnceLock::new();
    &D.get_or_init(|| {
        let python = std::env::var("LLMTUI_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root().join(".venv/bin/python"));
        let mut child = Command::new(python)
            .arg(root().join("tests/sdk_daemon.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tests/sdk_daemon.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let info: Value = serde_json::from_str(&line).expect("the daemon's address");
        std::mem::forget(child.stdin.take()); // keep the pipe open for the process's life
        Daemon { info, _child: child }
    })
    .info
}

fn tcp() -> Client {
    let d = daemon();
    Client::new(d["url"].as_str().unwrap()).with_api_key(d["api_key"].as_str().unwrap())
}

fn unix() -> Client {
    Client::unix(daemon()["socket"].as_str().unwrap())
}

fn short() -> Option<Value> {
    Some(json!({"num_predict": 8, "seed": 1, "temperature": 0}))
}

#[tokio::test]
async fn one_version_everywhere() {
    assert_eq!(tcp().version().await.unwrap(), llmtui::VERSION);
    assert_eq!(unix().version().await.unwrap(), llmtui::VERSION);
}

#[tokio::test]
async fn typed_errors() {
    let d = daemon();
    let bare = Client::new(d["url"].as_str().unwrap());
    let err = bare.version().await.unwrap_err();
    assert_eq!(err.code(), Some("forbidden"));
    assert_eq!(err.status(), Some(401));
    let err = tcp().show("nosuch:model").await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 404, .. }), "{err:?}");
    assert_eq!(err.code(), Some("model_not_found"));
    let gone = Client::unix(Path::new(d["home"].as_str().unwrap()).join("no.sock"));
    let err = gone.list().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }));
    assert_eq!(err.code(), Some("daemon_unavailable"));
    let err = Client::new("http://127.0.0.1:9").list().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn generate_streams_over_both_transports() {
    for client in [tcp(), unix()] {
        let mut req = GenerateRequest::new("smollm2:135m", "The sky is");
        req.options = short();
        let mut stream = client.generate(req).await.unwrap();
        let mut text = String::new();
        let mut last = None;
        while let Some(part) = stream.next().await {
            let part = part.unwrap();
            text.push_str(&part.response);
            last = Some(part);
        }
        let last = last.unwrap();
        assert!(last.stats.done && last.stats.eval_count.unwrap() > 0);
        assert!(!text.is_empty());
    }
    let mut req = GenerateRequest::new("smollm2:135m", "The sky is");
    req.options = short();
    let once = tcp().generate_once(req).await.unwrap();
    assert!(once.stats.done && !once.response.is_empty());
}

#[tokio::test]
async fn chat_and_dropping_a_stream_stops_it() {
    for client in [tcp(), unix()] {
        let mut req = ChatRequest::new("smollm2:135m", vec![Message::user("Say hi.")]);
        req.options = short();
        let once = client.chat_once(req.clone()).await.unwrap();
        assert_eq!(once.message.role, "assistant");
        let mut long = ChatRequest::new("smollm2:135m", vec![Message::user("Count to 500.")]);
        long.options = Some(json!({"num_predict": 400}));
        let mut stream = client.chat(long).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert!(!first.stats.done);
        drop(stream); // closes the connection: the daemon cancels the generation
        // The daemon still answers at once, and the model is free for the next request.
        let again = tokio::time::timeout(Duration::from_secs(120), client.chat_once(req))
            .await
            .expect("the dropped stream must not hold the model")
            .unwrap();
        assert!(again.stats.done);
    }
}

#[tokio::test]
async fn embeddings() {
    let res = unix().embed("all-minilm:l6-v2", vec!["a cat".into(), "a dog".into()]).await.unwrap();
    assert_eq!(res.embeddings.len(), 2);
    assert_eq!(res.embeddings[0].len(), 384);
}

#[tokio::test]
async fn models_list_show_pull_copy_delete() {
    let names: Vec<String> = tcp().list().await.unwrap().into_iter().map(|m| m.name).collect();
    assert!(names.contains(&"smollm2:135m".to_string()));
    let shown = tcp().show("smollm2:135m").await.unwrap();
    assert_eq!(shown.details.format.as_deref(), Some("gguf"));
    // Pull a real GGUF file from a local HTTP server, over the socket.
    let models = std::env::var("LLMTUI_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/llmtui-test-models"));
    let data = std::fs::read(models.join("smollm2-135m.gguf")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let header = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n",
                data.len()
            );
            let _ = sock.write_all(header.as_bytes()).await;
            if !head.starts_with("HEAD") {
                let _ = sock.write_all(&data).await;
            }
            let _ = sock.shutdown().await;
        }
    });
    let url = format!("http://127.0.0.1:{port}/rust-pulled.gguf");
    let mut events = Vec::new();
    let mut stream = unix().pull(&url).await.unwrap();
    while let Some(ev) = stream.next().await {
        events.push(ev.unwrap());
    }
    server.abort();
    assert_eq!(events.last().unwrap().status, "success");
    assert!(events.iter().any(|e| e.total.unwrap_or(0) > 0 && e.completed == e.total));
    unix().copy("rust-pulled:latest", "rust-copy:1").await.unwrap();
    unix().delete("rust-pulled:latest").await.unwrap();
    unix().delete("rust-copy:1").await.unwrap();
    let err = unix().delete("rust-copy:1").await.unwrap_err();
    assert_eq!(err.code(), Some("model_not_found"));
}

#[tokio::test]
async fn rag_collections() {
    let client = tcp();
    let docs = vec![
        RagDocument { name: "zorblat.md".into(), text: "# Zorblat\n\nZorblat is installed with `pipx install zorblat`.".into() },
        RagDocument { name: "weather.md".into(), text: "# Weather\n\nIt rains a lot in Bergen.".into() },
    ];
    let mut progress = client.add_documents("rustdocs", docs).await.unwrap();
    let mut last = None;
    while let Some(ev) = progress.next().await {
        last = Some(ev.unwrap());
    }
    assert_eq!(last.unwrap().status, "success");
    assert!(client.collections().await.unwrap().iter().any(|c| c.name == "rustdocs"));
    let coll = client.collection("rustdocs").await.unwrap();
    assert_eq!(coll.extra["files"].as_array().unwrap().len(), 2);
    let q = RagQuery { query: "How do I install Zorblat?".into(), k: Some(1), ..Default::default() };
    let mut parts = client.query("rustdocs", q).await.unwrap();
    let mut cited = Vec::new();
    while let Some(p) = parts.next().await {
        if let Some(chunks) = p.unwrap().chunks {
            cited = chunks.into_iter().map(|c| c.citation).collect();
        }
    }
    assert!(cited[0].contains("zorblat.md"), "{cited:?}");
    let q = RagQuery { query: "How do I install Zorblat?".into(), k: Some(1), answer: Some(true), options: short(), ..Default::default() };
    let mut parts = unix().query("rustdocs", q).await.unwrap();
    let mut answer = String::new();
    while let Some(p) = parts.next().await {
        if let Some(m) = p.unwrap().message {
            answer.push_str(&m.content);
        }
    }
    assert!(!answer.is_empty());
    client.delete_collection("rustdocs").await.unwrap();
    let err = match client.query("rustdocs", RagQuery { query: "x".into(), ..Default::default() }).await {
        Err(e) => e,
        Ok(mut s) => s.next().await.unwrap().unwrap_err(),
    };
    assert_eq!(err.code(), Some("collection_not_found"));
}

#[test]
fn the_examples_in_docs_sdk_md_are_these_files_and_run() {
    let doc = std::fs::read_to_string(root().join("docs/sdk.md")).unwrap();
    let blocks: Vec<&str> = doc.split("```rust\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    let examples = ["generate", "models"];
    assert_eq!(blocks.len(), examples.len(), "one example file per Rust block in docs/sdk.md");
    // cargo test builds the examples beside the test binaries.
    let bin_dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples");
    let d = daemon();
    for (name, block) in examples.iter().zip(blocks) {
        let file = crate_dir().join(format!("examples/{name}.rs"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), block, "{name}.rs differs from docs/sdk.md");
        let out = Command::new(bin_dir.join(name))
            .env("LLMTUI_HOST", d["url"].as_str().unwrap())
            .env("LLMTUI_API_KEY", d["api_key"].as_str().unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stdout.is_empty(), "{name} printed nothing");
    }
}
