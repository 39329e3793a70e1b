"""Making models your own: LoRA fine-tuning on the user's data (`llm finetune`).

Heavy: torch, transformers and peft (the ``train`` extra), imported only by the commands
that train. ``data`` reads and checks the training data without them.
"""
