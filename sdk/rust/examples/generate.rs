use futures_util::StreamExt;
use llmtui::{Client, GenerateRequest};

#[tokio::main]
async fn main() -> Result<(), llmtui::Error> {
    let client = Client::from_env()?; // LLMTUI_HOST / LLMTUI_API_KEY, else the Unix socket
    let mut req = GenerateRequest::new("smollm2:135m", "Why is the sky blue?");
    req.options = Some(serde_json::json!({"num_predict": 32}));
    let mut stream = client.generate(req).await?;
    while let Some(part) = stream.next().await {
        print!("{}", part?.response);
    }
    println!();
    Ok(())
}
