"""Speculative decoding on a real daemon: the same text with and without it (greedy and
seeded sampling), with prompt lookup and with a draft model (the test model drafting for
itself: an exact test of the mechanism), guesses really kept, and a draft whose vocabulary
differs refused."""

from __future__ import annotations

import threading
from typing import Any

from tests.daemon.test_api import raw

SMOL = "smollm2:135m"
DOCUMENT = ("The harbour of Velmar was built in 1742 by the merchant guild. Its stone pier is "
            "four hundred metres long and shelters forty fishing boats. Every spring the town "
            "holds a festival of lanterns on the pier, and the boats are painted blue and "
            "white. The lighthouse at the end of the pier was rebuilt in 1893 after a storm.")
# Text that repeats: even a tiny model goes on copying it, which prompt lookup guesses.
COPY = f"{DOCUMENT}\n\n{DOCUMENT}\n\n{DOCUMENT[:60]}"


def gen(client: Any, prompt: str, **opts: Any) -> dict[str, Any]:
    with raw(client) as http:
        r = http.post("/api/generate", json={
            "model": SMOL, "prompt": prompt, "raw": True, "stream": False,
            "options": {"temperature": 0, "repeat_penalty": 1.0, "num_predict": 60, **opts}},
            timeout=240)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_lookup_is_greedy_identical_and_pays_on_copying(client: Any) -> None:
    plain = gen(client, COPY, draft="none")
    spec = gen(client, COPY, draft="lookup")
    assert spec["response"] == plain["response"]
    assert "draft_count" not in plain
    assert spec["draft_accepted_count"] > 20, spec  # the copy is mostly guessed right
    free = "Write a short poem about autumn leaves:\n"
    assert gen(client, free, draft="lookup")["response"] == \
        gen(client, free, draft="none")["response"]


def test_lookup_keeps_seeded_sampling(client: Any) -> None:
    """Sampling from the target and comparing with the guess keeps the distribution, and
    draws the same random numbers: a seeded sampled reply is the same text."""
    opts = {"temperature": 0.9, "seed": 77, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
    a = gen(client, COPY, draft="none", **opts)
    b = gen(client, COPY, draft="lookup", **opts)
    assert a["response"] == b["response"]


def test_draft_model_drafting_for_itself(client: Any) -> None:
    plain = gen(client, "The history of the harbour:", draft="none", num_predict=40)
    spec = gen(client, "The history of the harbour:", draft=SMOL, num_predict=40)
    assert spec["response"] == plain["response"]
    # the same model guesses exactly what it then samples
    assert spec["draft_accepted_count"] >= 0.9 * spec["draft_count"] > 0, spec
    item = next(m for m in client.ps() if m["name"] == SMOL and not m["embedding"])
    assert item["slots"] >= 1


def test_parallel_streams_with_lookup(client: Any) -> None:
    expected = gen(client, COPY, draft="none")["response"]
    out: list[str] = []

    def run() -> None:
        out.append(gen(client, COPY, draft="lookup")["response"])

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert out == [expected] * 3


def test_a_draft_with_another_vocabulary_is_refused(client: Any) -> None:
    with raw(client) as http:
        r = http.post("/api/generate", json={
            "model": SMOL, "prompt": "hi", "stream": False,
            "options": {"draft": "gemma3:270m", "num_predict": 4}})
    assert r.status_code == 400, r.text
    assert "vocabularies differ" in r.json()["error"]
    with raw(client) as http:  # the daemon still serves, and the model is back
        r = http.post("/api/generate", json={"model": SMOL, "prompt": "hi", "stream": False,
                                             "options": {"num_predict": 4}})
        assert r.status_code == 200, r.text
        metrics = http.get("/metrics").text
    assert "llmtui_draft_accepted_total" in metrics
