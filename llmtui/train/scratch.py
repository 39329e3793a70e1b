"""`llm train`: a small Llama-architecture model from a text corpus, tokenizer included.

A byte-level BPE tokenizer (the ``tokenizers`` library, GPT-2's pre-tokenizer, so
llama.cpp's "gpt-2" pre-tokenizer reads it the same way) is trained on the corpus, then a
``LlamaForCausalLM`` of the chosen size with a plain torch loop on random windows of the
text. The last tenth of the corpus is held out: its loss (and perplexity) before and
after training is reported. The result is written as a Hugging Face folder, converted to
GGUF with llmtui's converter and installed, so `llm run NAME` uses it at once.
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from llmtui.errors import InvalidInput, require
from llmtui.models.names import ModelName
from llmtui.models.store import Manifest, Store
from llmtui.train import checkpoint
from llmtui.train import data as tdata
from llmtui.train.checkpoint import Interrupted

OnEvent = Callable[[dict[str, Any]], None]

#: hidden size, layers, attention heads, KV heads, MLP size, vocabulary, context
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"hidden": 128, "layers": 4, "heads": 4, "kv": 4, "mlp": 384, "vocab": 2048,
             "ctx": 256},
    "small": {"hidden": 384, "layers": 8, "heads": 6, "kv": 2, "mlp": 1024, "vocab": 8192,
              "ctx": 512},
}
EOS = "<|endoftext|>"


@dataclass
class TrainSettings:
    size: str = "tiny"
    steps: int = 300
    lr: float = 3e-3
    batch: int = 8
    seq: int = 128
    seed: int = 0
    device: str = "auto"  # where torch trains; not part of what --resume must match


def train(store: Store, cache_dir: Path, data_path: str, name: str, s: TrainSettings, *,
          resume: bool = False, export_hf: Path | None = None,
          on_event: OnEvent = lambda e: None) -> Manifest:
    if s.size not in SIZES:
        raise InvalidInput(f"--size must be {' or '.join(SIZES)}, not '{s.size}'")
    if s.steps < 1 or s.batch < 1 or not 16 <= s.seq <= SIZES[s.size]["ctx"] \
            or not 0 < s.lr < 1:
        raise InvalidInput(f"--steps and --batch must be 1 or more, --seq between 16 and "
                           f"{SIZES[s.size]['ctx']}, --lr between 0 and 1")
    target = ModelName.parse(name)
    if store.exists(target):
        raise InvalidInput(f"'{target}' already exists: pick another --name or remove it "
                           f"(llm rm {target})")
    if export_hf is not None and export_hf.exists() and any(export_hf.iterdir()):
        raise InvalidInput(f"{export_hf} is not empty")
    dataset = tdata.load(data_path)
    text = "\n\n".join(tdata.plain_text(r) for r in dataset.records)
    if len(text) < 2000:
        raise InvalidInput(f"{data_path}: {len(text)} characters is too little text to "
                           "train a model on (a few hundred KB makes a sensible start)")
    for module in ("torch", "transformers", "tokenizers"):
        require(module, "train", "Training a model")
    device = checkpoint.pick_device(s.device)  # a wrong --device fails before any work
    return _train(store, cache_dir, dataset, text, target, s, device, resume, export_hf,
                  on_event)


def make_tokenizer(train_text: str, vocab: int, out: Path) -> Any:
    """A byte-level BPE tokenizer trained on the text, saved for transformers in ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(train_text.splitlines(keepends=True), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=EOS, eos_token=EOS,
                                  unk_token=None, pad_token=EOS)
    tok.save_pretrained(out)
    return tok


def _train(store: Store, cache_dir: Path, dataset: tdata.Dataset, text: str,
           target: ModelName, s: TrainSettings, device: Any, resume: bool,
           export_hf: Path | None, on_event: OnEvent) -> Manifest:
    import json

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(s.seed)
    size = SIZES[s.size]
    cut = int(len(text) * 0.9)
    cut = text.rfind("\n", 0, cut) + 1 or cut
    train_text, held_text = text[:cut], text[cut:]
    run_dir = cache_dir / "train" / str(target).replace(":", "_").replace("/", "_")
    work = Path(tempfile.mkdtemp(dir=store.root, prefix=".train-"))
    try:
        hf = work / "hf"
        # a vocabulary the corpus can fill: merges learned from a few words each would
        # be tokens the held-out text never uses well
        vocab = max(384, min(size["vocab"], len(train_text) // 40))
        on_event({"status": f"training a {vocab}-token BPE tokenizer on "
                            f"{len(train_text):,} characters"})
        tok = make_tokenizer(train_text, vocab, hf)
        ids = tok(train_text, add_special_tokens=False)["input_ids"]
        held = tok(held_text, add_special_tokens=False)["input_ids"]
        if len(ids) < s.seq + 2 or len(held) < s.seq + 2:
            raise InvalidInput(f"the corpus is too short for --seq {s.seq} windows")
        config = LlamaConfig(
            vocab_size=len(tok), hidden_size=size["hidden"], intermediate_size=size["mlp"],
            num_hidden_layers=size["layers"], num_attention_heads=size["heads"],
            num_key_value_heads=size["kv"], max_position_embeddings=size["ctx"],
            rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
            bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
        model = LlamaForCausalLM(config).to(device)
        n_params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: min(1.0, (k + 1) / 20) * 0.5 * (1 + math.cos(math.pi * k / s.steps)))
        data_t = torch.tensor(ids, device=device)
        held_t = torch.tensor(held, device=device)
        settings = asdict(s)
        del settings["device"]  # a run stopped on one device may go on on another

        def held_loss() -> float:
            model.eval()
            with torch.no_grad():
                starts = range(0, len(held) - s.seq - 1, s.seq)[:16]
                xs = torch.stack([held_t[i:i + s.seq] for i in starts])
                loss = float(model(input_ids=xs, labels=xs).loss)
            model.train()
            return loss

        start = 0
        if resume:
            state = checkpoint.load(run_dir, str(target),
                                    {"data": dataset.sha256, "settings": settings})
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start, before = int(state["step"]), float(state["before"])
            # the tokenizer is trained the same way again (same text, same settings)
            on_event({"status": f"resuming at step {start} of {s.steps}"})
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
            before = held_loss()
        on_event({"status": f"training a {n_params / 1e6:.1f}M-parameter Llama for "
                            f"{s.steps} steps on {checkpoint.describe(device)}",
                  "held_out_loss": round(before, 4)})
        began = time.perf_counter()
        step = start
        curve: list[float] = []
        try:
            for step in range(start, s.steps):
                rng = random.Random(s.seed * 100_003 + step)
                offs = [rng.randrange(0, len(ids) - s.seq - 1) for _ in range(s.batch)]
                xs = torch.stack([data_t[o:o + s.seq] for o in offs])
                loss = model(input_ids=xs, labels=xs).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad()
                curve.append(float(loss.detach()))
                spent = time.perf_counter() - began
                done = step + 1 - start
                on_event({"step": step + 1, "steps": s.steps, "loss": round(curve[-1], 4),
                          "tokens_per_s": round(done * s.batch * s.seq / spent, 1),
                          "eta_s": round(spent / done * (s.steps - step - 1), 1)})
        except KeyboardInterrupt:
            checkpoint.save(run_dir, {
                "step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "data": dataset.sha256,
                "settings": settings, "before": before}, need=n_params * 4 * 4 + 2**20)
            raise Interrupted(step, s.steps) from None
        after = held_loss()
        on_event({"status": f"held-out loss {before:.3f} -> {after:.3f} (perplexity "
                            f"{math.exp(before):.1f} -> {math.exp(after):.1f})",
                  "held_out_loss": round(after, 4)})
        model.save_pretrained(hf)
        cfg_path = hf / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["llmtui_gguf_pre"] = "gpt-2"  # GPT-2's byte-level split: llama.cpp's "gpt-2"
        cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        if export_hf is not None:
            shutil.copytree(hf, export_hf, dirs_exist_ok=True)
        made = _install(store, hf, work, target, on_event)
        made = replace(made, tuned={
            "trained_from_scratch": True, "data": dataset.source,
            "data_sha256": dataset.sha256, "records": len(dataset.records),
            "settings": settings, "parameters": n_params,
            "device": checkpoint.describe(device),
            "loss_before": round(before, 4), "loss_after": round(after, 4),
            "perplexity_before": round(math.exp(before), 2),
            "perplexity_after": round(math.exp(after), 2), "evaluated_on": "held-out",
            "loss_curve": [round(x, 3) for x in curve[::max(1, len(curve) // 50)]]})
        store.write_manifest(made)
        shutil.rmtree(run_dir, ignore_errors=True)
        return made
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install(store: Store, hf: Path, work: Path, target: ModelName,
             on_event: OnEvent) -> Manifest:
    from llmtui.models.convert.hf_gguf import hf_to_gguf
    from llmtui.models.convert.run import _install_gguf

    out = work / f"{target.name.rsplit('/', 1)[-1]}-f32.gguf"
    on_event({"status": "writing the GGUF"})
    hf_to_gguf(hf, out, ftype="f32", name=str(target))
    return _install_gguf(store, out, target, "train", None)
