"""Regenerate ``data/minilm_reference.json``: sentence-transformers' own vectors for the
test sentences, the reference our converted GGUF must match (cosine >= 0.99).

Needs sentence-transformers (and so torch), which the project does not depend on; run it
from a separate environment:

    python tests/rag/make_reference.py PATH/TO/all-MiniLM-L6-v2-folder
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent

SENTENCES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "Two men pushed carts through the woods.",
    "How do I reset my password?",
    "Restart the daemon with llm daemon stop, then run any command.",
    "LanceDB stores vectors in columnar Lance files; full-text search uses an inverted index.",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1;",
    "Café déjà vu — naïve résumé, façade and jalapeño.",
    "Numbers: 3.14159, 2,718, 1e-12 and 10,000 chunks per second.",
    "UPPER CASE TEXT SHOULD EMBED LIKE lower case text.",
    "unbelievably tokenization antidisestablishmentarianism",
    "The mitochondria is the powerhouse of the cell.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Paris is the capital and most populous city of France.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "",
    "a",
    "   leading and trailing spaces   ",
    "Tabs\tand\nnewlines\n\nin one text.",
    "Emoji are unknown to this vocabulary: 🚀🔥",
    "中文字符 mixed with English words.",
    " ".join(["The report covers the quarterly results of the company, including revenue,"
              " costs, margins and the outlook for the next year."] * 6),
    "Retrieval-augmented generation grounds a language model's answer in retrieved documents.",
    "Chunking follows headings, paragraphs and code blocks, with some overlap between chunks.",
    "What is the boiling point of water at sea level?",
]


def main(model_dir: str) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu")
    vectors = model.encode(SENTENCES, normalize_embeddings=True)
    data = {"model": "sentence-transformers/all-MiniLM-L6-v2",
            "max_seq_length": model.max_seq_length,
            "items": [{"text": s, "vector": [round(float(x), 6) for x in v]}
                      for s, v in zip(SENTENCES, vectors, strict=True)]}
    (HERE / "data" / "minilm_reference.json").write_text(json.dumps(data) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
