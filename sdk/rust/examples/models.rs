use llmtui::{Client, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = Client::from_env()?;
    for m in client.list().await? {
        println!("{} {}", m.name, m.size);
    }
    let vectors = client.embed("all-minilm:l6-v2", vec!["a cat".into()]).await?;
    println!("dimensions: {}", vectors.embeddings[0].len());
    match client.show("no-such-model:1b").await {
        Err(e) if e.code() == Some("model_not_found") => println!("not found: {e}"),
        other => panic!("expected model_not_found, got {other:?}"),
    }
    Ok(())
}
