"""A reasoning test model: the SmolLM2 test model with a chat template that thinks.

The template is Qwen3's pattern in ChatML: the generation prompt opens a ``<think>`` block
(the reply starts inside it), and ``enable_thinking=false`` closes an empty one instead;
earlier replies carry their ``thinking`` back in. The weights are SmolLM2's, copied with
the ``gguf`` package (a new file: the model's metadata is in its header).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

THINK_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- if message.thinking %}{{ '<think>\\n' + message.thinking + '\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{{ message.content + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}"
    "{%- else %}{{ '<think>\\n' }}{%- endif %}"
    "{%- endif %}"
)


def make_thinking_model(source: Path, dest_dir: Path,
                        template: str = THINK_TEMPLATE) -> Path:
    """Write a copy of ``source`` whose chat template is ``template`` (once per folder)."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    tag = hashlib.sha256(template.encode()).hexdigest()[:12]
    target = dest_dir / f"{source.stem}-think-{tag}.gguf"
    if target.exists():
        return target
    reader = gguf.GGUFReader(source, "r")
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE]
    arch_name = bytes(arch.parts[arch.data[0]]).decode()
    partial = target.with_suffix(".part")
    writer = gguf.GGUFWriter(partial, arch=arch_name, endianess=reader.endianess)
    alignment = reader.fields.get(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = int(alignment.parts[alignment.data[0]][0])
    new = {gguf.Keys.Tokenizer.CHAT_TEMPLATE:
           MetadataDetails(gguf.GGUFValueType.STRING, template)}
    copy_with_new_metadata(reader, writer, new, [])
    partial.rename(target)
    return target
