"""Cutting streamed text into sentences as they complete, so speech can start with the
first sentence while a model is still writing the rest; and making Markdown speakable."""

from __future__ import annotations

import re

#: Words whose trailing dot does not end a sentence.
ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g",
                 "i.e", "eg", "ie", "fig", "no", "approx", "inc", "ltd", "co", "mt"}
#: A sentence longer than this is cut at a comma or a space (speech must not wait).
MAX_CHARS = 240
_END = re.compile(r"([.!?…]+[\"')\]]*)(\s+)|(\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s))")


_CLAUSE = re.compile(r"[,;:]\s|\s[–—-]\s")


class SentenceSplitter:
    """Feed text pieces; get back the sentences completed so far.

    With ``eager_first``, the first piece may end at a clause (a comma after a few words):
    a voice can start saying it while the model is still writing the sentence's end."""

    def __init__(self, max_chars: int = MAX_CHARS, eager_first: bool = False,
                 min_words: int = 4) -> None:
        self.buf = ""
        self.max_chars = max_chars
        self.eager = eager_first
        self.min_words = min_words

    def feed(self, text: str) -> list[str]:
        self.buf += text
        out: list[str] = []
        while True:
            cut = self._boundary()
            if cut is None and self.eager:
                cut = self._clause()
            if cut is None:
                break
            piece, self.buf = self.buf[:cut], self.buf[cut:]
            if piece.strip():
                out.append(piece.strip())
                self.eager = False
        while len(self.buf) > self.max_chars:
            window = self.buf[: self.max_chars]
            at = max(window.rfind(", "), window.rfind("; "), window.rfind(": "))
            at = at + 1 if at > self.max_chars // 3 else window.rfind(" ")
            if at <= 0:
                at = self.max_chars
            out.append(self.buf[:at].strip())
            self.buf = self.buf[at:]
        return out

    def _boundary(self) -> int | None:
        for match in _END.finditer(self.buf):
            if match.group(3):  # a paragraph break or a list item
                return match.end()
            before = self.buf[: match.start(1)].rsplit(None, 1)
            word = before[-1].lower().rstrip(".") if before else ""
            if match.group(1).startswith(".") and (
                    word in ABBREVIATIONS or (len(word) == 1 and word.isalpha())
                    or (word.replace(".", "").isdigit() and self._digit_follows(match))):
                continue
            return match.end()
        return None

    def _clause(self) -> int | None:
        for match in _CLAUSE.finditer(self.buf):
            if len(self.buf[: match.start()].split()) >= self.min_words:
                return match.end()
        return None

    def _digit_follows(self, match: re.Match[str]) -> bool:
        rest = self.buf[match.end():]
        return bool(rest[:1].isdigit())

    def flush(self) -> list[str]:
        rest, self.buf = self.buf.strip(), ""
        return [rest] if rest else []


_CODE_FENCE = re.compile(r"```.*?(```|$)", re.S)
_INLINE = re.compile(r"[*_~`#>|]+")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]+\)")
_URL = re.compile(r"https?://\S+")


def speakable(text: str) -> str:
    """Markdown and code out, words in: what a voice should say for this text."""
    text = _CODE_FENCE.sub(" (code) ", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub("a link", text)
    text = _INLINE.sub("", text)
    text = re.sub(r"^\s*[-•]\s+", "", text, flags=re.M)
    return re.sub(r"\s+", " ", text).strip()
