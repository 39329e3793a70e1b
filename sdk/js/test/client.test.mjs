// The JavaScript SDK against a real `llm serve` (started here by tests/sdk_daemon.py on a
// free 127.0.0.1 port, with the real tiny models), over TCP and over the Unix socket.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { createServer } from "node:http";
import { createReadStream, readFileSync, statSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { createInterface } from "node:readline";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import {
  Client, LlmtuiError, ModelNotFoundError, ForbiddenError, DaemonUnavailableError, VERSION,
} from "../dist/index.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const PKG = resolve(HERE, "..");
const ROOT = resolve(PKG, "../..");
const PYTHON = process.env.LLMTUI_PYTHON ?? join(ROOT, ".venv/bin/python");
const MODELS = process.env.LLMTUI_TEST_MODELS ?? join(process.env.HOME, ".cache/llmtui-test-models");
const SHORT = { num_predict: 8, seed: 1, temperature: 0 };

let daemon, info, tcp, unix;

before(async () => {
  daemon = spawn(PYTHON, [join(ROOT, "tests/sdk_daemon.py")], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: daemon.stdout });
  info = await new Promise((ok, fail) => {
    lines.once("line", (line) => ok(JSON.parse(line)));
    daemon.once("exit", (code) => fail(new Error(`sdk_daemon.py exited with ${code}`)));
  });
  tcp = new Client({ host: info.url, apiKey: info.api_key });
  unix = new Client({ socketPath: info.socket });
});

after(() => {
  daemon?.stdin.end();  // the helper stops the daemon and removes its home
});

test("one version: the package, VERSION and the daemon agree", async () => {
  const pkg = JSON.parse(readFileSync(join(PKG, "package.json"), "utf8"));
  assert.equal(VERSION, pkg.version);
  assert.equal(await tcp.version(), pkg.version);
  assert.equal(await unix.version(), pkg.version);
});

test("TCP without the API key is refused with a typed error", async () => {
  const bare = new Client({ host: info.url, apiKey: "" });
  await assert.rejects(bare.version(), (err) => {
    assert.ok(err instanceof ForbiddenError && err instanceof LlmtuiError);
    assert.equal(err.code, "forbidden");
    assert.equal(err.status, 401);
    return true;
  });
});

test("a daemon that is not there: DaemonUnavailableError", async () => {
  const gone = new Client({ socketPath: join(info.home, "no.sock") });
  await assert.rejects(gone.list(), DaemonUnavailableError);
});

test("generate streams parts, then the stats", async () => {
  for (const client of [tcp, unix]) {
    const parts = [];
    for await (const part of client.generate({ model: "smollm2:135m", prompt: "The sky is", options: SHORT })) {
      parts.push(part);
    }
    const last = parts.at(-1);
    assert.equal(last.done, true);
    assert.ok(last.eval_count > 0);
    assert.ok(parts.slice(0, -1).map((p) => p.response).join("").length > 0);
  }
  const once = await tcp.generateOnce({ model: "smollm2:135m", prompt: "The sky is", options: SHORT });
  assert.equal(once.done, true);
  assert.ok(once.response.length > 0);
});

test("chat streams a reply; chatOnce returns it whole", async () => {
  const messages = [{ role: "user", content: "Say hi." }];
  let text = "";
  for await (const part of unix.chat({ model: "smollm2:135m", messages, options: SHORT })) {
    if (!part.done) text += part.message.content;
  }
  assert.ok(text.length > 0);
  const once = await tcp.chatOnce({ model: "smollm2:135m", messages, options: SHORT });
  assert.equal(once.message.role, "assistant");
});

test("AbortController stops a stream; breaking out of the loop closes it", async () => {
  for (const client of [tcp, unix]) {
    const ctl = new AbortController();
    const seen = [];
    await assert.rejects(async () => {
      for await (const part of client.generate({ model: "smollm2:135m", prompt: "Count:",
                                                 options: { num_predict: 400 } }, { signal: ctl.signal })) {
        seen.push(part);
        ctl.abort();
      }
    }, (err) => err.name === "AbortError");
    assert.equal(seen.length, 1);
    let n = 0;
    for await (const _ of client.generate({ model: "smollm2:135m", prompt: "Count:", options: { num_predict: 400 } })) {
      if (++n === 2) break;
    }
    assert.equal(n, 2);
  }
  // The daemon is fine afterwards and nothing is left generating.
  const ps = await tcp.ps();
  assert.ok(ps.some((m) => m.name === "smollm2:135m"));
  const pre = new AbortController();
  pre.abort();
  await assert.rejects(tcp.version({ signal: pre.signal }), (err) => err.name === "AbortError");
});

test("embeddings", async () => {
  const res = await unix.embed("all-minilm:l6-v2", ["a cat", "a dog"]);
  assert.equal(res.embeddings.length, 2);
  assert.equal(res.embeddings[0].length, 384);
});

test("models: list, show, pull with progress, copy, delete, typed not-found", async () => {
  const names = (await tcp.list()).map((m) => m.name);
  assert.ok(names.includes("smollm2:135m"));
  const shown = await tcp.show("smollm2:135m");
  assert.equal(shown.details.format, "gguf");
  await assert.rejects(tcp.show("nosuch:model"), (err) => {
    assert.ok(err instanceof ModelNotFoundError);
    assert.equal(err.code, "model_not_found");
    assert.equal(err.status, 404);
    return true;
  });
  // Pull a real GGUF file from a local HTTP server, over the socket (URLs are local-only).
  const file = join(MODELS, "smollm2-135m.gguf");
  const server = createServer((req, res) => {
    res.writeHead(200, { "content-length": statSync(file).size, "content-type": "application/octet-stream" });
    createReadStream(file).pipe(res);
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  try {
    const url = `http://127.0.0.1:${server.address().port}/pulled-model.gguf`;
    const events = [];
    for await (const ev of unix.pull(url)) events.push(ev);
    assert.equal(events.at(-1).status, "success");
    assert.ok(events.some((e) => e.total > 0 && e.completed === e.total));
  } finally {
    server.close();
  }
  assert.ok((await unix.list()).some((m) => m.name === "pulled-model:latest"));
  await unix.copy("pulled-model:latest", "another:name");
  await unix.delete("pulled-model:latest");
  await unix.delete("another:name");
  await assert.rejects(unix.delete("another:name"), ModelNotFoundError);
});

test("RAG: add documents, list, query with citations and an answer, delete", async () => {
  const docs = [
    { name: "zorblat.md", text: "# Zorblat\n\nZorblat is installed with `pipx install zorblat`.\n\nIts config lives in ~/.zorblat.toml." },
    { name: "other.md", text: "# Weather\n\nIt rains a lot in Bergen." },
  ];
  const progress = [];
  for await (const ev of tcp.addDocuments("sdkdocs", docs)) progress.push(ev);
  assert.equal(progress.at(-1).status, "success");
  const colls = await tcp.collections();
  assert.ok(colls.some((c) => c.name === "sdkdocs"));
  const coll = await tcp.collection("sdkdocs");
  assert.equal(coll.files.length, 2);
  let chunks = [];
  for await (const part of tcp.query("sdkdocs", "How do I install Zorblat?", { k: 1 })) {
    if (part.chunks) chunks = part.chunks;
  }
  assert.match(chunks[0].citation, /zorblat\.md/);
  let answer = "";
  for await (const part of unix.query("sdkdocs", "How do I install Zorblat?",
                                      { k: 1, answer: true, options: SHORT })) {
    answer += part.message?.content ?? "";
  }
  assert.ok(answer.length > 0);
  await tcp.deleteCollection("sdkdocs");
  await assert.rejects(async () => {
    for await (const _ of tcp.query("sdkdocs", "anything")) { /* nothing */ }
  }, (err) => err instanceof LlmtuiError && err.code === "collection_not_found");
});

test("the examples in docs/sdk.md run against the daemon", async () => {
  const doc = readFileSync(join(ROOT, "docs/sdk.md"), "utf8");
  const blocks = [...doc.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 3, "docs/sdk.md has JavaScript examples");
  const dir = join(PKG, ".doc-examples");  // inside the package: `import "llmtui"` resolves to it
  mkdirSync(dir, { recursive: true });
  try {
    for (const [i, code] of blocks.entries()) {
      const file = join(dir, `example-${i}.mjs`);
      writeFileSync(file, code);
      const { stdout } = await promisify(execFile)(process.execPath, [file], {
        env: { ...process.env, LLMTUI_HOST: info.url, LLMTUI_API_KEY: info.api_key },
        timeout: 120_000,
      });
      assert.ok(stdout.trim().length > 0, `example ${i} printed nothing:\n${code}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
