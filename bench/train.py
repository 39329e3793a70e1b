"""Fine-tuning benchmark: `llm finetune` against the same PEFT run in a plain script.

Prints figures, never asserts. Run: `python bench/train.py` (after `make setup models`).

  1. training tokens/s of `llm finetune smollm2:135m` at its defaults (rank 16, batch 4,
     max length 256) ÷ the same LoRA, data, batches and optimizer in a plain PEFT script,
     both in child processes, one after the other                   target >= 0.95
  2. peak RSS of each (the CLI's includes the dequantizing step's child)
  3. time to the tuned model answering: `llm finetune` (base already dequantized) plus
     the first `llm run` of the new model
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import fetch_models  # noqa: E402
from tests.train.test_finetune import PARAPHRASE, write_facts  # noqa: E402

LLM = [sys.executable, "-m", "llmtui"]

#: The plain script: what a user would write by hand with transformers and peft.
PLAIN = r'''
import json, math, random, sys, time
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
hf, data, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
tok = AutoTokenizer.from_pretrained(hf)
model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
rows = [json.loads(x)["messages"] for x in open(data) if x.strip()]
ex = []
for msgs in rows[1:]:  # the CLI holds one out of ten
    p = tok(tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True),
            add_special_tokens=False)["input_ids"]
    f = tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"]
    ex.append((f[:256], ([-100] * len(p) + f[len(p):])[:256]))
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
    target_modules=["v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    task_type="CAUSAL_LM"))
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
per_epoch = math.ceil(len(ex) / 4)
tokens, start = 0, time.perf_counter()
for step in range(steps):
    epoch, k = divmod(step, per_epoch)
    order = list(range(len(ex)))
    random.Random(epoch).shuffle(order)
    chunk = [ex[i] for i in order[k * 4:(k + 1) * 4]]
    n = max(len(x) for x, _ in chunk)
    ids = torch.tensor([x + [pad] * (n - len(x)) for x, _ in chunk])
    lab = torch.tensor([y + [-100] * (n - len(y)) for _, y in chunk])
    mask = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x, _ in chunk])
    model(input_ids=ids, attention_mask=mask, labels=lab).loss.backward()
    opt.step()
    opt.zero_grad()
    tokens += int(mask.sum())
print(json.dumps({"tokens_per_s": tokens / (time.perf_counter() - start)}))
'''


def measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run ``cmd``; its stdout and its own peak RSS in MB (wait4's rusage: the process
    itself, not its children)."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.DEVNULL,
                                text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"{cmd[:4]} failed ({proc.returncode})")
        out.seek(0)
        return out.read(), usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="llmtui-bench-train-"))
    env = {**os.environ, "LLMTUI_HOME": str(home), "LLMTUI_IDLE_TIMEOUT": "120"}
    model = fetch_models.cache_dir() / "smollm2-135m.gguf"
    subprocess.run([*LLM, "import", str(model), "--name", "smollm2:135m", "--link"], env=env,
                   check=True, capture_output=True)
    data = write_facts(home / "facts.jsonl")
    # warm-up: dequantize the base once (cached), so neither side pays for it
    subprocess.run([*LLM, "finetune", "smollm2:135m", "--data", str(data), "--name", "warm",
                    "--steps", "1"], env=env, check=True, capture_output=True)
    hf = next((home / "cache" / "finetune").glob("base-*"))
    started = time.perf_counter()
    out, cli_rss = measured([*LLM, "finetune", "smollm2:135m", "--data", str(data), "--name",
                             "tuned", "--steps", str(args.steps), "--json"], env)
    tuned_s = time.perf_counter() - started
    cli = json.loads(out.splitlines()[-1])["tuned"]["tokens_per_s"]
    started = time.perf_counter()
    answer = subprocess.run([*LLM, "run", "tuned", "-n", "16", "--temperature", "0",
                             PARAPHRASE], env=env, check=True, capture_output=True, text=True)
    answer_s = time.perf_counter() - started
    out, plain_rss = measured([sys.executable, "-c", PLAIN, str(hf), str(data),
                               str(args.steps)])
    plain = json.loads(out.splitlines()[-1])["tokens_per_s"]
    print(f"1. training tokens/s  llm finetune {cli:.1f}  plain PEFT script {plain:.1f}  "
          f"ratio {cli / plain:.2f}   target >= 0.95 ({args.steps} steps each)")
    print(f"2. peak RSS  llm finetune {cli_rss:.0f} MB  plain PEFT script {plain_rss:.0f} MB")
    print(f"3. time to the tuned model answering  finetune {tuned_s:.1f} s + first answer "
          f"{answer_s:.1f} s = {tuned_s + answer_s:.1f} s  ({answer.stdout.strip()[:60]!r})")
    subprocess.run([*LLM, "daemon", "stop"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
