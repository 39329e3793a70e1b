/**
 * llmtui: a client of the llmtui daemon (local language models) for Node 18+ and browsers.
 *
 * Over TCP it uses `fetch`; in Node it can also talk to the daemon's private Unix socket
 * (the default when no host is given), through `node:http`. Streaming calls are async
 * iterators of the daemon's NDJSON lines; every call takes an AbortSignal; errors carry
 * the API's `code`.
 */

export const VERSION = "0.1.0";

// -- wire types (the Ollama shapes, plus llmtui's /api/x extensions) --------------------------

export type Options = Record<string, unknown> & {
  temperature?: number; top_p?: number; top_k?: number; seed?: number; num_predict?: number;
  num_ctx?: number; stop?: string[];
};

export interface Message {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  images?: string[];
  thinking?: string;
  tool_calls?: unknown[];
}

export interface GenerateRequest {
  model: string; prompt: string; system?: string; options?: Options;
  format?: "json" | Record<string, unknown>; raw?: boolean;
  keep_alive?: string | number; images?: string[];
}

export interface ChatRequest {
  model: string; messages: Message[]; options?: Options;
  format?: "json" | Record<string, unknown>; keep_alive?: string | number; tools?: unknown[];
}

/** Counters the last part of a reply carries (durations in nanoseconds). */
export interface Stats {
  done: boolean; done_reason?: string; total_duration?: number; load_duration?: number;
  prompt_eval_count?: number; prompt_eval_duration?: number; eval_count?: number;
  eval_duration?: number;
}

export interface GenerateResponse extends Stats {
  model: string; created_at: string; response: string; thinking?: string;
}

export interface ChatResponse extends Stats {
  model: string; created_at: string; message: Message;
}

export interface EmbedResponse {
  model: string; embeddings: number[][]; total_duration?: number; prompt_eval_count?: number;
}

export interface ModelDetails {
  format?: string; family?: string; families?: string[] | null; parameter_size?: string;
  quantization_level?: string; parent_model?: string;
}

export interface ModelInfo {
  name: string; model: string; modified_at: string; size: number; digest: string;
  details: ModelDetails;
}

export interface RunningModel extends ModelInfo { expires_at?: string; size_vram?: number }

export interface ShowResponse {
  modelfile?: string; parameters?: string; template?: string; details: ModelDetails;
  model_info?: Record<string, unknown>; capabilities?: string[];
}

export interface ProgressResponse {
  status: string; digest?: string; total?: number; completed?: number;
}

export interface RagDocument { name: string; text?: string; data?: string }

export interface Collection {
  name: string; model?: string; dimensions?: number; files?: number; chunks?: number;
  [key: string]: unknown;
}

export interface RagChunk {
  text: string; citation: string; score?: number; [key: string]: unknown;
}

/** One streamed part of a RAG query: the retrieved chunks first, then the answer's text. */
export interface RagQueryPart {
  chunks?: RagChunk[]; message?: { role: string; content: string }; done?: boolean;
  [key: string]: unknown;
}

export interface RequestOptions { signal?: AbortSignal }

export interface ClientOptions {
  /** `http://127.0.0.1:11434`: the daemon's TCP address (`llm serve --port`). */
  host?: string;
  /** The daemon's Unix socket (Node only). The default when no host is given. */
  socketPath?: string;
  /** Sent as `Authorization: Bearer KEY` (the daemon's --api-key). */
  apiKey?: string;
  headers?: Record<string, string>;
  /** A fetch implementation (default: the global one). */
  fetch?: typeof fetch;
}

// -- errors ------------------------------------------------------------------------------------

/** An error the daemon answered (or a failure to reach it), with the API's `code`. */
export class LlmtuiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(message: string, status: number, code: string) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
  }
}
export class ModelNotFoundError extends LlmtuiError {}
export class InvalidInputError extends LlmtuiError {}
export class ForbiddenError extends LlmtuiError {}
export class BusyError extends LlmtuiError {}
export class DaemonUnavailableError extends LlmtuiError {}

const ERRORS: Record<string, typeof LlmtuiError> = {
  model_not_found: ModelNotFoundError, not_found: ModelNotFoundError,
  invalid_input: InvalidInputError, usage: InvalidInputError, context_overflow: InvalidInputError,
  forbidden: ForbiddenError, busy: BusyError, daemon_unavailable: DaemonUnavailableError,
};

function apiError(status: number, body: unknown): LlmtuiError {
  let message = `HTTP ${status}`;
  let code = status === 404 ? "not_found" : status === 401 || status === 403 ? "forbidden"
    : "error";
  if (body && typeof body === "object") {
    const b = body as { error?: unknown; code?: unknown };
    const err = b.error;
    if (typeof err === "string") message = err;
    else if (err && typeof err === "object") {  // the OpenAI shape
      const e = err as { message?: unknown; code?: unknown };
      if (typeof e.message === "string") message = e.message;
      if (typeof e.code === "string") code = e.code;
    }
    if (typeof b.code === "string") code = b.code;
  } else if (typeof body === "string" && body) {
    message = body.slice(0, 300);
  }
  const Kind = ERRORS[code] ?? LlmtuiError;
  return new Kind(message, status, code);
}

// -- transport ---------------------------------------------------------------------------------

interface RawResponse {
  status: number;
  chunks: AsyncIterable<Uint8Array>;
  close(): void;
}

function env(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env?.[name] || undefined;
}

function isNode(): boolean {
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof proc?.versions?.node === "string";
}

/** Where the daemon's socket is when nothing is configured (what the Python side uses). */
export function defaultSocketPath(): string | undefined {
  if (!isNode()) return undefined;
  const home = env("LLMTUI_HOME");
  if (home) return `${home.replace(/\/+$/, "")}/run/llmtui.sock`;
  const proc = (globalThis as { process?: { platform?: string; getuid?: () => number } }).process;
  if (proc?.platform === "darwin") {
    return `${env("HOME")}/Library/Caches/TemporaryItems/llmtui/llmtui.sock`;
  }
  if (proc?.platform === "win32") return undefined;  // Windows: TCP (see docs/sdk.md)
  const runtime = env("XDG_RUNTIME_DIR") ?? `/tmp/runtime-${proc?.getuid?.() ?? 0}`;
  return `${runtime}/llmtui/llmtui.sock`;
}

async function* readerChunks(body: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      if (value) yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

function abortError(signal?: AbortSignal): Error {
  const reason = signal?.reason;
  if (reason instanceof Error) return reason;
  const err = new Error("the request was aborted");
  err.name = "AbortError";
  return err;
}

// -- the client --------------------------------------------------------------------------------

export class Client {
  readonly host?: string;
  readonly socketPath?: string;
  private readonly headers: Record<string, string>;
  private readonly fetchImpl?: typeof fetch;

  constructor(options: ClientOptions = {}) {
    const host = options.host ?? (options.socketPath ? undefined : env("LLMTUI_HOST"));
    if (host) {
      this.host = (/^https?:\/\//.test(host) ? host : `http://${host}`).replace(/\/+$/, "");
    } else {
      this.socketPath = options.socketPath ?? env("LLMTUI_SOCKET") ?? defaultSocketPath();
      if (!this.socketPath) this.host = "http://127.0.0.1:11434";
    }
    const key = options.apiKey ?? env("LLMTUI_API_KEY");
    this.headers = { ...(key ? { authorization: `Bearer ${key}` } : {}), ...options.headers };
    this.fetchImpl = options.fetch;
  }

  // ---- raw requests ----

  private async send(method: string, path: string, body: unknown,
                     signal?: AbortSignal): Promise<RawResponse> {
    if (signal?.aborted) throw abortError(signal);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { ...this.headers };
    if (payload !== undefined) headers["content-type"] = "application/json";
    try {
      if (this.socketPath) return await this.sendUnix(method, path, payload, headers, signal);
      const f = this.fetchImpl ?? globalThis.fetch;
      const res = await f(`${this.host}${path}`, { method, headers, body: payload, signal });
      const stream = res.body;
      return {
        status: res.status,
        chunks: stream ? readerChunks(stream) : (async function* () {})(),
        close: () => { void stream?.cancel().catch(() => undefined); },
      };
    } catch (err) {
      if (signal?.aborted) throw abortError(signal);
      if (err instanceof LlmtuiError) throw err;
      const where = this.socketPath ?? this.host;
      throw new DaemonUnavailableError(
        `cannot reach the llmtui daemon at ${where}: ${(err as Error).message} ` +
        "(start it with: llm daemon start, or llm serve --port 11434)", 0, "daemon_unavailable");
    }
  }

  private async sendUnix(method: string, path: string, payload: string | undefined,
                         headers: Record<string, string>,
                         signal?: AbortSignal): Promise<RawResponse> {
    const specifier = "node:http";  // a variable: browser bundles must not pull it in
    const http = await import(specifier) as typeof import("node:http");
    if (payload !== undefined) {  // not chunked: a DELETE's body must arrive too
      headers = { ...headers, "content-length": String(new TextEncoder().encode(payload).length) };
    }
    return await new Promise<RawResponse>((resolve, reject) => {
      const req = http.request({ socketPath: this.socketPath, path, method,
                                 headers: { host: "llmtui", ...headers } }, (res) => {
        signal?.addEventListener("abort", () => res.destroy(abortError(signal)), { once: true });
        resolve({ status: res.statusCode ?? 0, chunks: res, close: () => res.destroy() });
      });
      req.on("error", reject);
      signal?.addEventListener("abort", () => req.destroy(abortError(signal)), { once: true });
      req.end(payload);
    });
  }

  private static async readAll(res: RawResponse): Promise<string> {
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of res.chunks) text += decoder.decode(chunk, { stream: true });
    return text + decoder.decode();
  }

  /** One JSON request and its JSON answer (or an LlmtuiError). */
  async request<T>(method: string, path: string, body?: unknown,
                   opts: RequestOptions = {}): Promise<T> {
    const res = await this.send(method, path, body, opts.signal);
    let text: string;
    try {
      text = await Client.readAll(res);
    } catch (err) {
      if (opts.signal?.aborted) throw abortError(opts.signal);
      throw err;
    }
    let data: unknown = text;
    try {
      data = text ? JSON.parse(text) : {};
    } catch { /* not JSON: keep the text for the error */ }
    if (res.status >= 400) throw apiError(res.status, data);
    return data as T;
  }

  /** A streaming request: its NDJSON lines as parsed objects. Breaking out of the loop (or
   * aborting the signal) closes the connection, and the daemon stops the work. */
  async *stream<T>(path: string, body: unknown, opts: RequestOptions = {}): AsyncGenerator<T> {
    const res = await this.send("POST", path, body, opts.signal);
    try {
      if (res.status >= 400) {
        const text = await Client.readAll(res);
        let data: unknown = text;
        try { data = JSON.parse(text); } catch { /* keep the text */ }
        throw apiError(res.status, data);
      }
      const decoder = new TextDecoder();
      let buffer = "";
      for await (const chunk of res.chunks) {
        buffer += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (line) yield Client.part<T>(line, res.status);
        }
      }
      const rest = (buffer + decoder.decode()).trim();
      if (rest) yield Client.part<T>(rest, res.status);
    } catch (err) {
      if (opts.signal?.aborted) throw abortError(opts.signal);
      throw err;
    } finally {
      res.close();
    }
  }

  private static part<T>(line: string, status: number): T {
    const data = JSON.parse(line) as { error?: unknown };
    if (data && typeof data === "object" && "error" in data && data.error) {
      throw apiError(status >= 400 ? status : 500, data);  // an error in the middle of a stream
    }
    return data as T;
  }

  // ---- generation ----

  /** Stream a completion: `for await (const part of client.generate({...})) ...`. */
  generate(req: GenerateRequest, opts: RequestOptions = {}): AsyncGenerator<GenerateResponse> {
    return this.stream<GenerateResponse>("/api/generate", { ...req, stream: true }, opts);
  }

  /** A whole completion at once. */
  generateOnce(req: GenerateRequest, opts: RequestOptions = {}): Promise<GenerateResponse> {
    return this.request("POST", "/api/generate", { ...req, stream: false }, opts);
  }

  /** Stream a chat reply. */
  chat(req: ChatRequest, opts: RequestOptions = {}): AsyncGenerator<ChatResponse> {
    return this.stream<ChatResponse>("/api/chat", { ...req, stream: true }, opts);
  }

  /** A whole chat reply at once. */
  chatOnce(req: ChatRequest, opts: RequestOptions = {}): Promise<ChatResponse> {
    return this.request("POST", "/api/chat", { ...req, stream: false }, opts);
  }

  /** Vectors for one text or many. */
  embed(model: string, input: string | string[], opts: RequestOptions & {
    truncate?: boolean; keep_alive?: string | number } = {}): Promise<EmbedResponse> {
    const { signal, ...rest } = opts;
    return this.request("POST", "/api/embed", { model, input, ...rest }, { signal });
  }

  // ---- models ----

  async list(opts: RequestOptions = {}): Promise<ModelInfo[]> {
    return (await this.request<{ models: ModelInfo[] }>("GET", "/api/tags", undefined, opts))
      .models;
  }

  async ps(opts: RequestOptions = {}): Promise<RunningModel[]> {
    return (await this.request<{ models: RunningModel[] }>("GET", "/api/ps", undefined, opts))
      .models;
  }

  show(model: string, opts: RequestOptions = {}): Promise<ShowResponse> {
    return this.request("POST", "/api/show", { model }, opts);
  }

  /** Pull a model (catalog name, URL or hf://ORG/REPO/FILE), streaming its progress. */
  pull(model: string, opts: RequestOptions = {}): AsyncGenerator<ProgressResponse> {
    return this.stream<ProgressResponse>("/api/pull", { model, stream: true }, opts);
  }

  async delete(model: string, opts: RequestOptions = {}): Promise<void> {
    await this.request("DELETE", "/api/delete", { model }, opts);
  }

  async copy(source: string, destination: string, opts: RequestOptions = {}): Promise<void> {
    await this.request("POST", "/api/copy", { source, destination }, opts);
  }

  async version(opts: RequestOptions = {}): Promise<string> {
    return (await this.request<{ version: string }>("GET", "/api/version", undefined, opts))
      .version;
  }

  // ---- RAG collections (/api/x/rag) ----

  async collections(opts: RequestOptions = {}): Promise<Collection[]> {
    return (await this.request<{ collections: Collection[] }>("GET", "/api/x/rag", undefined,
                                                              opts)).collections;
  }

  collection(name: string, opts: RequestOptions = {}): Promise<Collection> {
    return this.request("GET", `/api/x/rag/${encodeURIComponent(name)}`, undefined, opts);
  }

  async deleteCollection(name: string, opts: RequestOptions = {}): Promise<void> {
    await this.request("DELETE", `/api/x/rag/${encodeURIComponent(name)}`, undefined, opts);
  }

  /** Add documents (text, or base64 `data` for PDFs) to a collection, streaming progress. */
  addDocuments(name: string, documents: RagDocument[],
               opts: RequestOptions & { model?: string } = {}): AsyncGenerator<ProgressResponse> {
    const { signal, ...rest } = opts;
    return this.stream<ProgressResponse>(`/api/x/rag/${encodeURIComponent(name)}/add`,
                                         { documents, ...rest, stream: true }, { signal });
  }

  /** Search a collection; with `answer: true` the chat model answers from the chunks. */
  query(name: string, query: string, opts: RequestOptions & {
    k?: number; answer?: boolean; model?: string; min_similarity?: number; options?: Options;
  } = {}): AsyncGenerator<RagQueryPart> {
    const { signal, ...rest } = opts;
    return this.stream<RagQueryPart>(`/api/x/rag/${encodeURIComponent(name)}/query`,
                                     { query, ...rest }, { signal });
  }
}

export default Client;
