from __future__ import annotations

import pytest

from llmtui.errors import InvalidInput
from llmtui.models.names import ModelName, parse_digest


@pytest.mark.parametrize("text,expected", [
    ("smollm2:135m", "smollm2:135m"),
    ("SmolLM2:135M", "smollm2:135m"),
    ("llama3.2", "llama3.2:latest"),
    ("library/qwen2.5-coder:1.5b", "library/qwen2.5-coder:1.5b"),
])
def test_valid_names(text: str, expected: str) -> None:
    assert str(ModelName.parse(text)) == expected


@pytest.mark.parametrize("text", [
    "", ":", "../etc:passwd", "a/../b:c", "a:../x", "a/b/c:d", "-x:1", "a:b/c", "a b:c",
    "foo:" + "x" * 200, "/abs:1", "a\x00b:c", ".hidden:1", "a:..",
])
def test_invalid_names(text: str) -> None:
    with pytest.raises(InvalidInput):
        ModelName.parse(text)


def test_digest_validation() -> None:
    hexd = "a" * 64
    assert parse_digest(f"sha256:{hexd}") == hexd
    assert parse_digest(f"sha256-{hexd}") == hexd
    for bad in [f"sha256:{'a' * 63}", f"sha256:../../{'a' * 58}", "sha256:" + "A" * 64,
                f"md5:{hexd}", f"sha256:{hexd}/../x", ""]:
        with pytest.raises(InvalidInput):
            parse_digest(bad)
