"""From retrieved chunks to a grounded prompt, and the words for "nothing relevant"."""

from __future__ import annotations

from typing import Any

from llmtui.rag.index import Hit

#: Chunks less similar than this to the question are not used. all-MiniLM-L6-v2 puts
#: unrelated questions at 0.0-0.3 (median 0.15) and a passage that answers one at
#: 0.43-0.8 (see bench/rag.py, which prints the distribution for its question set).
MIN_SIMILARITY = 0.35

SYSTEM = (
    "You answer questions using only the numbered sources below. After each fact, cite "
    "its source number in brackets, like [1]. If the sources do not contain the answer, "
    "say that they do not; never make up an answer.")


def relevant(hits: list[Hit], min_similarity: float = MIN_SIMILARITY) -> list[Hit]:
    return [h for h in hits if h.similarity >= min_similarity]


def nothing_found(collection: str) -> str:
    return (f"Nothing in '{collection}' is relevant to that question, so I will not guess. "
            "Try other words, or add the documents that answer it.")


def context_block(hits: list[Hit]) -> str:
    parts = []
    for i, hit in enumerate(hits, start=1):
        where = hit.citation + (f" ({hit.heading})" if hit.heading else "")
        parts.append(f"[{i}] {where}\n{hit.text.strip()}")
    return "\n\n".join(parts)


def messages_for(question: str, hits: list[Hit],
                 history: list[dict[str, Any]] | None = None,
                 system: str | None = None) -> list[dict[str, Any]]:
    """A chat request: the instruction, earlier turns (TUI), then sources + question."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": system or SYSTEM}]
    msgs.extend(history or [])
    msgs.append({"role": "user",
                 "content": f"Sources:\n\n{context_block(hits)}\n\nQuestion: {question}"})
    return msgs


def sources_footer(hits: list[Hit]) -> str:
    return "Sources:\n" + "\n".join(f"  [{i}] {h.citation}" for i, h in enumerate(hits, 1))
