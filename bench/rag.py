"""RAG benchmark: ingest throughput, retrieval latency at 10k chunks, hit rate@5.

Prints figures (and the ingest ratio against raw llama-cpp-python embedding the same
chunks in-process, measured in the same run); never asserts. Run: `python bench/rag.py`.

  1. ingest: `llm rag add` on generated Markdown (--pages pages of ~1,800 characters)
     chunks/s through the daemon, and ÷ raw llama-cpp-python on the same chunk texts
  2. retrieval: p50/p95 of `/api/x/rag/NAME/query` (embed the question + hybrid search)
     over a collection of --latency-chunks chunks, and of the search alone in-process
  3. hit rate@5: questions about facts planted in the generated documents; a hit is a
     top-5 chunk that contains the fact's value. Also the similarity of the best chunk
     for answerable questions and for questions the documents cannot answer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import fetch_models  # noqa: E402

LLM = [sys.executable, "-m", "llmtui"]
SYLLABLES = ["var", "nol", "ost", "ria", "kel", "dun", "mar", "bri", "tha", "zen", "quo",
             "pel", "ash", "gor", "vin", "lum", "sar", "tek", "hal", "dor"]
FILLER = [
    "The region has a long history of trade along its rivers and mountain passes.",
    "Local festivals take place in late summer and draw visitors from nearby towns.",
    "Its economy depends on farming, small workshops and a growing tourism sector.",
    "The climate is mild, with wet winters and warm, dry summers most years.",
    "Public transport links the centre with the outlying villages several times a day.",
    "Historians disagree about the origin of the name, which appears in old charters.",
    "Schools in the area teach two languages from the first year onwards.",
    "Several old bridges were rebuilt after the floods of the previous century.",
]
def name2(r: random.Random, suffix: str = "") -> str:
    return f"{word(r).capitalize()} {word(r).capitalize()}{suffix}"


ATTRS = [
    ("population", "What is the population of {n}?",
     lambda r: f"{r.randint(10, 999)},{r.randint(100, 999)}"),
    ("river", "Which river flows through {n}?", lambda r: "the " + word(r).capitalize()),
    ("founder", "Who founded {n}?", lambda r: name2(r)),
    ("mayor", "Who is the mayor of {n}?", lambda r: name2(r, "son")),
    ("altitude", "At what altitude does {n} lie?", lambda r: f"{r.randint(100, 2999)} metres"),
    ("dish", "What is the traditional dish of {n}?", lambda r: f"{word(r)} stew"),
]
UNANSWERABLE = [
    "How do I configure a VPN on a router?", "What is the capital of Australia?",
    "How many moons does Jupiter have?", "What is the best way to learn the violin?",
    "How do I bake sourdough bread?", "Who won the football world cup in 1998?",
]


def word(r: random.Random) -> str:
    return "".join(r.choice(SYLLABLES) for _ in range(r.randint(2, 3)))


def make_corpus(folder: Path, pages: int, seed: int = 7) -> list[tuple[str, str]]:
    """Markdown files of ~5 pages each; returns (question, expected value) pairs."""
    r = random.Random(seed)
    folder.mkdir(parents=True)
    questions: list[tuple[str, str]] = []
    for d in range(max(1, pages // 5)):
        parts = []
        for _ in range(5):  # one town per "page"
            town = word(r).capitalize() + r.choice(["burg", "holm", "wick", "stad", "ford"])
            parts.append(f"## {town}\n")
            facts = r.sample(ATTRS, 3)
            for key, question, value_of in facts:
                value = value_of(r)
                filler = " ".join(r.sample(FILLER, 3))
                parts.append(f"{filler} The {key} of {town} is {value}. "
                             f"{' '.join(r.sample(FILLER, 2))}\n")
                questions.append((question.format(n=town), value))
            parts.append(" ".join(r.sample(FILLER, 4)) + "\n")
        (folder / f"region{d:03d}.md").write_text(f"# Region {d}\n\n" + "\n".join(parts))
    return questions


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--latency-chunks", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=100)
    args = ap.parse_args()

    cache = fetch_models.cache_dir()
    for name, spec in fetch_models.MODELS.items():
        fetch_models.fetch(name, spec, cache)
    work = Path(tempfile.mkdtemp(prefix="llmtui-ragbench-"))
    home = work / "h"
    env = {**os.environ, "LLMTUI_HOME": str(home), "LLMTUI_IDLE_TIMEOUT": "600"}
    os.environ.update(env)
    from llmtui.models.convert import sentence_transformer_to_gguf

    gguf = work / "minilm.gguf"
    sentence_transformer_to_gguf(cache / "all-minilm-l6-v2.zip", gguf)
    subprocess.run([*LLM, "import", str(gguf), "--name", "all-minilm:l6-v2", "--link"],
                   env=env, check=True, capture_output=True)
    corpus = work / "corpus"
    questions = make_corpus(corpus, args.pages)
    chars = sum(p.stat().st_size for p in corpus.glob("*.md"))
    print(f"corpus: {args.pages} pages in {len(list(corpus.glob('*.md')))} files, "
          f"{chars:,} characters, {len(questions)} questions")

    # 1. ingest through the daemon (warm the model first, as a real user's second run is)
    subprocess.run([*LLM, "embed", "warm up"], env=env, check=True, capture_output=True)
    t = time.perf_counter()
    res = subprocess.run([*LLM, "rag", "add", str(corpus), "-c", "bench", "--json", "-q"],
                         env=env, capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        sys.exit(res.stderr)
    summary = json.loads(res.stdout)
    n_chunks = summary["new_chunks"]
    ours = n_chunks / wall

    from llama_cpp import Llama

    from llmtui.rag.chunk import chunk_blocks
    from llmtui.rag.extract import kind_of, read_blocks

    texts = []
    for path in sorted(corpus.glob("*.md")):
        blocks, _ = read_blocks(path, kind_of(path) or "text", path.read_bytes())
        texts += [c.embed_text() for c in chunk_blocks(blocks)]
    raw = Llama(str(gguf), embedding=True, n_ctx=512, verbose=False)
    t = time.perf_counter()
    for text in texts:
        raw.embed(text)
    raw_rate = len(texts) / (time.perf_counter() - t)
    raw.close()
    print(f"1. ingest: {n_chunks} chunks in {wall:.1f} s = {ours:.1f} chunks/s "
          f"({n_chunks / args.pages:.1f} chunks/page, {args.pages / wall:.1f} pages/s); "
          f"raw llama-cpp-python embedding the same chunks: {raw_rate:.1f} chunks/s; "
          f"ratio {ours / raw_rate:.3f}")

    # 3. hit rate@5 through the API (what `llm rag query --no-answer` does)
    from llmtui.config import Settings
    from llmtui.daemon.client import Client
    from llmtui.rag.answer import MIN_SIMILARITY

    client = Client(settings=Settings.load())
    hits, best_sims = 0, []
    misses = []
    for question, value in questions:
        data = client.request("POST", "/api/x/rag/bench/query",
                              {"query": question, "k": 5, "min_similarity": -1})
        if any(value in c["text"] for c in data["chunks"]):
            hits += 1
        else:
            misses.append(question)
        best_sims.append(data["chunks"][0]["similarity"] if data["chunks"] else 0.0)
    un = [client.request("POST", "/api/x/rag/bench/query",
                         {"query": q, "k": 5, "min_similarity": -1})["chunks"][0]["similarity"]
          for q in UNANSWERABLE]
    print(f"3. hit rate@5: {hits}/{len(questions)} = {hits / len(questions):.3f}; best-chunk "
          f"similarity: answerable median {statistics.median(best_sims):.2f} "
          f"(min {min(best_sims):.2f}), unanswerable median {statistics.median(un):.2f} "
          f"(max {max(un):.2f}); the default cut-off is {MIN_SIMILARITY}")
    if misses:
        print("   missed, e.g.: " + "; ".join(misses[:3]))

    # 2. latency over a big collection: fill a table with synthetic chunks directly
    import numpy as np

    from llmtui.rag.chunk import Chunk
    from llmtui.rag.index import Collections, FileEntry

    colls = Collections(Settings.load().paths.data_dir)
    coll = colls.open_or_create("latency", "all-minilm:l6-v2", 384)
    r = random.Random(3)
    rng = np.random.default_rng(3)
    per_file = 500
    with colls.lock("latency"):
        for f in range(args.latency_chunks // per_file):
            chunks = [Chunk(text=" ".join(r.sample(FILLER, 3)) + f" Item {f}-{i} is "
                            f"{word(r)}.", line=i + 1, end_line=i + 1) for i in range(per_file)]
            vecs = rng.normal(size=(per_file, 384)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            coll.put_file(f"/synthetic/{f}.md", FileEntry(hash=f"{f:064x}", name=f"{f}.md",
                                                         chunks=per_file, size=0, added=0),
                          chunks, vecs.tolist())
        coll.refresh_index()
    total = coll.stats()["chunks"]
    api_ms, search_ms = [], []
    qs = [f"Which item is {word(r)}?" for _ in range(args.queries)]
    client.request("POST", "/api/x/rag/latency/query", {"query": "warm up"})
    for q in qs:
        t = time.perf_counter()
        client.request("POST", "/api/x/rag/latency/query", {"query": q, "k": 5})
        api_ms.append((time.perf_counter() - t) * 1000)
    vec = rng.normal(size=384).astype(np.float32).tolist()
    coll.search(vec, "warm up", 5)
    for q in qs:
        t = time.perf_counter()
        coll.search(vec, q, 5)
        search_ms.append((time.perf_counter() - t) * 1000)
    print(f"2. retrieval over {total:,} chunks, {args.queries} queries: through the API "
          f"(embed + hybrid search) p50 {pct(api_ms, 50):.1f} ms, p95 {pct(api_ms, 95):.1f} ms; "
          f"hybrid search alone p50 {pct(search_ms, 50):.1f} ms, p95 {pct(search_ms, 95):.1f} ms")
    client.close()
    subprocess.run([*LLM, "daemon", "stop"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
