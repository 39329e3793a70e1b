// The official JavaScript clients (npm `ollama` and `openai`) against a real `llm serve`.
// Run by tests/api/test_js.py: LLMTUI_URL names the daemon, NODE_PATH the installed clients.
// Each check prints "ok NAME"; a failed assertion ends the run with a non-zero status.
"use strict";

const assert = require("node:assert/strict");
const { Ollama } = require("ollama");
const { OpenAI } = require("openai");

const URL_ = process.env.LLMTUI_URL;
const SMOL = "smollm2:135m";
const GREEDY = { temperature: 0, repeat_penalty: 1.0, seed: 1 };
const PERSON = {
  type: "object",
  properties: { name: { type: "string", maxLength: 30 }, age: { type: "integer" } },
  required: ["name", "age"],
};

const ollama = new Ollama({ host: URL_ });
const openai = new OpenAI({ baseURL: `${URL_}/v1`, apiKey: "unused", maxRetries: 0 });

const checks = {
  async "ollama list and show"() {
    const { models } = await ollama.list();
    assert.ok(models.some((m) => m.model === SMOL));
    const shown = await ollama.show({ model: SMOL });
    assert.equal(shown.details.quantization_level, "Q4_1");
    assert.deepEqual(shown.capabilities, ["completion"]);
  },
  async "ollama chat streaming"() {
    const stream = await ollama.chat({
      model: SMOL, stream: true, options: { ...GREEDY, num_predict: 8 },
      messages: [{ role: "user", content: "Say hello" }],
    });
    let text = "";
    let last;
    for await (const part of stream) {
      text += part.message.content;
      last = part;
    }
    assert.ok(text.length > 0);
    assert.equal(last.done, true);
    assert.equal(last.eval_count, 8);
  },
  async "ollama thinking"() {
    const r = await ollama.chat({
      model: "thinker", think: true, options: { ...GREEDY, num_predict: 5 },
      messages: [{ role: "user", content: "What is 4+4?" }],
    });
    assert.ok(r.message.thinking.length > 0);
  },
  async "ollama embeddings"() {
    const r = await ollama.embed({ model: SMOL, input: ["the cat sat", "a dog ran"] });
    assert.equal(r.embeddings.length, 2);
    assert.equal(r.embeddings[0].length, 576);
    const short = await ollama.embed({ model: SMOL, input: "the cat sat", dimensions: 64 });
    assert.equal(short.embeddings[0].length, 64);
    const norm = Math.sqrt(short.embeddings[0].reduce((s, x) => s + x * x, 0));
    assert.ok(Math.abs(norm - 1) < 1e-4);
  },
  async "ollama structured output"() {
    const r = await ollama.chat({
      model: SMOL, format: PERSON, options: { ...GREEDY, num_predict: 80 },
      messages: [{ role: "user", content: "Describe a person." }],
    });
    const data = JSON.parse(r.message.content);
    assert.equal(typeof data.name, "string");
    assert.ok(Number.isInteger(data.age));
  },
  async "ollama errors"() {
    await assert.rejects(
      ollama.chat({ model: "nope:1b", messages: [{ role: "user", content: "x" }] }),
      (err) => err.status_code === 404);
  },
  async "openai models"() {
    const ids = [];
    for await (const m of openai.models.list()) ids.push(m.id);
    assert.ok(ids.includes(SMOL));
  },
  async "openai chat streaming"() {
    const stream = await openai.chat.completions.create({
      model: SMOL, max_tokens: 6, temperature: 0, stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "Say hello" }],
    });
    let text = "";
    let usage;
    for await (const chunk of stream) {
      if (chunk.choices.length) text += chunk.choices[0].delta.content || "";
      if (chunk.usage) usage = chunk.usage;
    }
    assert.ok(text.length > 0);
    assert.equal(usage.completion_tokens, 6);
  },
  async "openai embeddings"() {
    const r = await openai.embeddings.create({ model: SMOL, input: ["a", "b"] });
    assert.deepEqual(r.data.map((d) => d.index), [0, 1]);
    assert.equal(r.data[0].embedding.length, 576);  // the package asks for base64
    const short = await openai.embeddings.create({ model: SMOL, input: "a", dimensions: 32 });
    assert.equal(short.data[0].embedding.length, 32);
  },
  async "openai structured output"() {
    const r = await openai.chat.completions.create({
      model: SMOL, max_tokens: 80, temperature: 0,
      messages: [{ role: "user", content: "A person, as JSON." }],
      response_format: { type: "json_schema", json_schema: { name: "person", schema: PERSON } },
    });
    const data = JSON.parse(r.choices[0].message.content);
    assert.ok("name" in data && "age" in data);
  },
  async "openai forced tool call"() {
    const r = await openai.chat.completions.create({
      model: SMOL, max_tokens: 40, temperature: 0, tool_choice: "required",
      messages: [{ role: "user", content: "Hello!" }],
      tools: [{ type: "function", function: {
        name: "get_weather", parameters: { type: "object", required: ["city"],
          properties: { city: { type: "string", maxLength: 20 } } } } }],
    });
    const call = r.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, "get_weather");
    assert.ok("city" in JSON.parse(call.function.arguments));
  },
  async "openai responses"() {
    const r = await openai.responses.create({ model: SMOL, input: "Say hello",
                                              max_output_tokens: 8, temperature: 0 });
    assert.ok(r.output_text.length > 0);
  },
  async "openai errors"() {
    await assert.rejects(openai.chat.completions.create({
      model: "nope:1b", messages: [{ role: "user", content: "x" }] }),
    (err) => err.status === 404);
  },
};

(async () => {
  for (const [name, check] of Object.entries(checks)) {
    await check();
    console.log(`ok ${name}`);
  }
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
