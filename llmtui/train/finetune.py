"""`llm finetune`: LoRA on the user's data, from a model in the store, into a new model.

The base GGUF is dequantized once to a Hugging Face folder (the converter's own step, in a
child process, cached by the base's digest). PEFT trains a LoRA over it with a plain torch
loop: loss only on the answers, the model's own chat template for chat data. The adapter
is written as a GGUF LoRA (llama.cpp's naming) and installed as a new model whose manifest
holds the base's layers plus the adapter layer, which llama.cpp applies at load, as
Ollama's ADAPTER does. ``merge`` writes one merged GGUF instead.

LoRA goes on the value/output projections and the MLP, not on Q and K: llama.cpp stores
the query and key rows of Llama-family models permuted, so adapters there would need the
same permutation; the MLP is where small models keep facts anyway.
"""

from __future__ import annotations

import math
import os
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
from llmtui.models.store import Layer, Manifest, Store, now_iso
from llmtui.train import checkpoint
from llmtui.train import data as tdata
from llmtui.train.checkpoint import Interrupted

OnEvent = Callable[[dict[str, Any]], None]
TARGETS = ("v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TuneSettings:
    """The defaults suit a 2-core CPU and a small dataset: a few minutes for SmolLM2."""

    steps: int | None = None  # default: epochs over the training records
    epochs: float = 3.0
    rank: int = 16
    alpha: float = 32.0
    lr: float = 1e-3
    batch: int = 4
    max_len: int = 256
    held_out: float = 0.1
    seed: int = 0
    device: str = "auto"  # where torch trains; not part of what --resume must match


def cache_root(cache_dir: Path) -> Path:
    return cache_dir / "finetune"


def finetune(store: Store, cache_dir: Path, base: str, data_path: str, name: str | None,
             s: TuneSettings, *, resume: bool = False, merge: str | None = None,
             on_event: OnEvent = lambda e: None) -> Manifest:
    """Train, export and install; the new model's manifest. Everything a user can get
    wrong fails before training, and nothing is installed until it is complete."""
    if s.rank < 1 or s.batch < 1 or s.max_len < 16 or not 0 < s.lr < 1 \
            or (s.steps is not None and s.steps < 1) or not 0 <= s.held_out < 0.9:
        raise InvalidInput("--rank, --batch and --steps must be 1 or more, --max-len 16 or "
                           "more, --lr between 0 and 1, --held-out below 0.9")
    manifest = store.get(base)
    parsed = ModelName.parse(base)
    target = ModelName.parse(name or f"{parsed.name}-tuned:{parsed.tag}")
    if store.exists(target):
        raise InvalidInput(f"'{target}' already exists: pick another --name or remove it "
                           f"(llm rm {target})")
    if manifest.format != "gguf" or manifest.adapters:
        raise InvalidInput(f"'{manifest.name}' is not a plain GGUF model: fine-tuning "
                           "starts from one (convert it with `llm convert --to gguf`)")
    if "embedding" in manifest.capabilities:
        raise InvalidInput(f"'{manifest.name}' is an embedding model: fine-tuning makes "
                           "text models")
    dataset = tdata.load(data_path)
    for module in ("torch", "transformers", "peft"):
        require(module, "train", "Fine-tuning")
    device = checkpoint.pick_device(s.device)  # a wrong --device fails before any work
    hf = _base_folder(store, cache_dir, manifest, on_event)
    return _train(store, cache_dir, manifest, hf, dataset, target, s, device, resume, merge,
                  on_event)


def _base_folder(store: Store, cache_dir: Path, manifest: Manifest,
                 on_event: OnEvent) -> Path:
    """The base as a Hugging Face folder, made once per base (by digest)."""
    from llmtui.models.convert.run import run_steps

    folder = cache_root(cache_dir) / f"base-{manifest.digest[:16]}"
    if (folder / "config.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    store.check_space(manifest.parameters * 4 + 2**28 if manifest.parameters
                      else manifest.size * 8)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".work-"))
    try:
        on_event({"status": f"dequantizing {manifest.name} for training (once)"})
        _, path = store.resolve_file(manifest.name)
        try:
            run_steps({"op": "to-hf", "source": str(path), "to": "hf", "work": str(work)},
                      work, on_event)
        except Exception as exc:  # the converter's error, as this command's
            raise InvalidInput(f"cannot fine-tune '{manifest.name}': {exc}") from None
        os.replace(work / "out", folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


# -- examples -----------------------------------------------------------------------------


def encode(tok: Any, record: tdata.Record, max_len: int) -> list[tuple[list[int], list[int]]]:
    """(token ids, labels) for one record; labels are -100 where nothing is learned (the
    prompts). Chat and prompt/completion records go through the model's chat template."""
    if record.kind == "text":
        out = []
        for piece in tdata.chunk_text(record.text, max_len * 3):
            piece_ids = tok(piece, add_special_tokens=False)["input_ids"]
            out.append((piece_ids, list(piece_ids)))
        return out
    msgs = list(record.messages) if record.kind == "chat" else [
        {"role": "user", "content": record.prompt},
        {"role": "assistant", "content": record.completion}]
    ids: list[int] = []
    labels: list[int] = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        prompt = tok.apply_chat_template(msgs[:i], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(msgs[:i + 1], tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        f_ids = tok(full, add_special_tokens=False)["input_ids"]
        if p_ids[:len(ids)] != ids:  # the template rewrote earlier turns: this turn only
            ids, labels = [], []
        new = p_ids[len(ids):]
        ids += new
        labels += [-100] * len(new)
        answer = f_ids[len(p_ids):]  # the answer and the template's end of turn
        ids += answer
        labels += answer
    return [(ids, labels)]


def _examples(tok: Any, records: list[tdata.Record], max_len: int,
              on_event: OnEvent) -> list[tuple[list[int], list[int]]]:
    out = []
    cut = 0
    for rec in records:
        for ids, labels in encode(tok, rec, max_len):
            if len(ids) > max_len:
                cut += 1
                ids, labels = ids[:max_len], labels[:max_len]
            if any(x != -100 for x in labels[1:]):
                out.append((ids, labels))
    if cut:
        on_event({"warning": f"{cut} examples were longer than {max_len} tokens and were "
                             "cut (raise --max-len to keep them whole)"})
    return out


def _batch(torch: Any, examples: list[tuple[list[int], list[int]]], pad: int,
           device: Any = "cpu") -> Any:
    n = max(len(ids) for ids, _ in examples)
    ids = torch.tensor([x + [pad] * (n - len(x)) for x, _ in examples], device=device)
    labels = torch.tensor([y + [-100] * (n - len(y)) for _, y in examples], device=device)
    mask = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x, _ in examples],
                        device=device)
    return ids, labels, mask


def _loss(torch: Any, model: Any, examples: list[tuple[list[int], list[int]]], pad: int,
          batch: int, device: Any = "cpu") -> float:
    """Mean loss per learned token over ``examples`` (no gradients)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch):
            ids, labels, mask = _batch(torch, examples[i:i + batch], pad, device)
            n = int((labels[:, 1:] != -100).sum())
            total += float(model(input_ids=ids, attention_mask=mask, labels=labels).loss) * n
            count += n
    model.train()
    return total / max(1, count)


# -- training -----------------------------------------------------------------------------


def _train(store: Store, cache_dir: Path, manifest: Manifest, hf: Path,
           dataset: tdata.Dataset, target: ModelName, s: TuneSettings, device: Any,
           resume: bool, merge: str | None, on_event: OnEvent) -> Manifest:
    import torch
    from peft import (
        LoraConfig,
        get_peft_model,
        get_peft_model_state_dict,
        set_peft_model_state_dict,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.manual_seed(s.seed)
    tok = AutoTokenizer.from_pretrained(hf)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    train_recs, held_recs = tdata.split(dataset.records, s.held_out, s.seed)
    train = _examples(tok, train_recs, s.max_len, on_event)
    held = _examples(tok, held_recs, s.max_len, on_event) if held_recs else []
    if not train:
        raise InvalidInput(f"{dataset.source}: no example has anything to learn after "
                           "tokenizing", hint="nothing was trained")
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [t for t in TARGETS if t in present]
    if not targets:
        raise InvalidInput(f"'{manifest.name}' has none of the layers LoRA is put on "
                           f"({', '.join(TARGETS)})")
    cfg = LoraConfig(r=s.rank, lora_alpha=s.alpha, lora_dropout=0.0,  # type: ignore[arg-type]
                     target_modules=targets, task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)  # type: ignore[assignment]
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.lr)
    per_epoch = math.ceil(len(train) / s.batch)
    steps = s.steps or max(1, math.ceil(s.epochs * per_epoch))
    run_dir = cache_root(cache_dir) / "runs" / str(target).replace(":", "_").replace("/", "_")
    settings = {**asdict(s), "steps": steps}
    del settings["device"]  # a run stopped on one device may go on on another
    start = 0
    if resume:
        state = checkpoint.load(run_dir, str(target),
                                {"data": dataset.sha256, "settings": settings})
        set_peft_model_state_dict(model, state["adapter"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        torch.set_rng_state(state["rng"])
        before = float(state["before"])
        on_event({"status": f"resuming at step {start} of {steps}"})
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        before = _loss(torch, model, held or train, pad, s.batch, device)
    on_event({"status": f"training a rank-{s.rank} LoRA on {len(train)} examples "
                        f"({len(held)} held out) for {steps} steps on "
                        f"{checkpoint.describe(device)}",
              "held_out_loss": round(before, 4)})

    def save(step: int) -> None:
        checkpoint.save(run_dir, {
            "step": step, "adapter": get_peft_model_state_dict(model),
            "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
            "data": dataset.sha256, "settings": settings, "before": before},
            need=sum(p.numel() for p in params) * 4 * 4 + 2**20)

    model.train()
    began = time.perf_counter()
    tokens = 0
    step = start
    try:
        for step in range(start, steps):
            epoch, k = divmod(step, per_epoch)
            order = list(range(len(train)))
            random.Random(s.seed * 1000 + epoch).shuffle(order)
            chunk = [train[i] for i in order[k * s.batch:(k + 1) * s.batch]]
            ids, labels, mask = _batch(torch, chunk, pad, device)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            tokens += int(mask.sum())
            spent = time.perf_counter() - began
            done = step + 1 - start
            on_event({"step": step + 1, "steps": steps, "loss": round(float(loss.detach()), 4),
                      "tokens_per_s": round(tokens / spent, 1) if spent else 0.0,
                      "eta_s": round(spent / done * (steps - step - 1), 1)})
    except KeyboardInterrupt:
        save(step)
        raise Interrupted(step, steps) from None
    after = _loss(torch, model, held or train, pad, s.batch, device)
    on_event({"status": f"held-out loss {before:.3f} -> {after:.3f}",
              "held_out_loss": round(after, 4)})
    tuned = {"base": manifest.name, "base_digest": f"sha256:{manifest.digest}",
             "data": dataset.source, "data_sha256": dataset.sha256,
             "records": len(dataset.records), "held_out": len(held_recs),
             "settings": settings, "targets": targets,
             "device": checkpoint.describe(device),
             "loss_before": round(before, 4), "loss_after": round(after, 4),
             "evaluated_on": "held-out" if held else "training data",
             "tokens_per_s": round(tokens / max(1e-9, time.perf_counter() - began), 1)}
    if merge:
        made = _install_merged(store, model, tok, hf, manifest, target, merge, tuned, on_event)
    else:
        made = _install_adapter(store, model, manifest, target, s, tuned)
    shutil.rmtree(run_dir, ignore_errors=True)
    return made


# -- export -------------------------------------------------------------------------------


def write_gguf_lora(model: Any, arch: str, alpha: float, out: Path) -> int:
    """The PEFT adapter as a GGUF LoRA: general.type "adapter", adapter.lora.alpha, and
    ``blk.N.<tensor>.weight.lora_a`` / ``.lora_b`` in llama.cpp's names. A is (rank, in)
    and B is (out, rank), as PEFT holds them; llama.cpp checks A's ne[0] against the
    weight's input size and B's ne[1] against its output size. Returns the tensor count."""
    import gguf
    import numpy as np
    from peft import get_peft_model_state_dict

    arch_id = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), None)
    if arch_id is None:
        raise InvalidInput(f"no GGUF tensor names for the '{arch}' architecture")
    n_blocks = int(model.base_model.model.config.num_hidden_layers)
    names = gguf.get_tensor_name_map(arch_id, n_blocks)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(alpha))
    count = 0
    for key, value in sorted(get_peft_model_state_dict(model).items()):
        base, _, which = key.rpartition(".lora_")
        hf_name = base.removeprefix("base_model.model.") + ".weight"
        name = names.get_name(hf_name, try_suffixes=(".weight",))
        if name is None:
            raise InvalidInput(f"no GGUF name for the tuned layer {hf_name}")
        array = value.detach().to("cpu").float().numpy().astype(np.float32)
        writer.add_tensor(f"{name}.lora_{'a' if which.startswith('A') else 'b'}", array)
        count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return count


def _install_adapter(store: Store, model: Any, manifest: Manifest, target: ModelName,
                     s: TuneSettings, tuned: dict[str, Any]) -> Manifest:
    tmp = store.new_temp("adapter-")
    try:
        write_gguf_lora(model, manifest.architecture or "llama", s.alpha, tmp)
        digest, size = store.add_blob_from_file(tmp)
    finally:
        tmp.unlink(missing_ok=True)
    layer = Layer(digest=digest, size=size, filename="adapter.gguf", kind="adapter")
    made = replace(manifest, name=str(target), layers=(*manifest.layers, layer),
                   source=f"finetune:{manifest.name}", created=now_iso(), tuned=tuned)
    store.write_manifest(made)
    return made


def _install_merged(store: Store, model: Any, tok: Any, hf: Path, manifest: Manifest,
                    target: ModelName, qtype: str, tuned: dict[str, Any],
                    on_event: OnEvent) -> Manifest:
    """The LoRA merged into the weights, written as one GGUF (quantized to ``qtype``)."""
    from llmtui.models.convert.run import _install_gguf, gguf_precision, run_steps

    qtype = gguf_precision(qtype)
    work = Path(tempfile.mkdtemp(dir=store.root, prefix=".merge-"))
    try:
        on_event({"status": f"merging the LoRA and writing a {qtype} GGUF"})
        merged = model.merge_and_unload()
        merged.save_pretrained(work / "hf")
        tok.save_pretrained(work / "hf")
        for extra in ("chat_template.jinja",):
            if (hf / extra).is_file() and not (work / "hf" / extra).is_file():
                shutil.copy(hf / extra, work / "hf" / extra)
        filename = f"{target.name.rsplit('/', 1)[-1]}-{qtype.lower()}.gguf"
        run_steps({"to": "gguf", "source": str(work / "hf"), "source_kind": "hf",
                   "type": qtype, "filename": filename, "work": str(work)}, work, on_event)
        made = _install_gguf(store, work / "out" / filename, target,
                             f"finetune:{manifest.name}", manifest)
        made = replace(made, tuned={**tuned, "merged": qtype})
        store.write_manifest(made)
        return made
    finally:
        shutil.rmtree(work, ignore_errors=True)
