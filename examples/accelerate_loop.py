"""GradDrop in an accelerate training loop: attach to what `accelerator.prepare` returns.

    accelerate launch --num_processes 2 --cpu examples/accelerate_loop.py OUT
    accelerate launch --num_processes 2 --use_deepspeed --zero_stage 3 examples/accelerate_loop.py OUT
    accelerate launch --num_processes 2 --use_fsdp --fsdp_version 2 examples/accelerate_loop.py OUT

The same script runs on one process, DDP, FSDP2 and DeepSpeed ZeRO; GradDrop finds the
backend from the prepared model, and every rank draws the same masks. A tiny random
XLM-R keeps it offline; for real work load `xlm-roberta-large` instead. Writes the final
parameters to OUT/final.safetensors.
"""

import sys

import torch
from accelerate import Accelerator
from safetensors.torch import save_file
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

from graddrop_dist import GradDrop, GradDropConfig


def tiny_dataset(rows=64, length=12, vocab=128):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (rows, length), generator=generator)
    labels = torch.randint(0, 3, (rows,), generator=generator)
    return [{"input_ids": i, "attention_mask": torch.ones_like(i), "labels": y}
            for i, y in zip(ids, labels)]


def tiny_model():
    torch.manual_seed(0)
    return XLMRobertaForSequenceClassification(XLMRobertaConfig(
        vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=16, num_labels=3,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


def main(out, accelerator=None):
    accelerator = accelerator or Accelerator(gradient_accumulation_steps=2)
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-3)
    per_rank = 4 // accelerator.num_processes  # a global micro-batch of 4 on any world size
    loader = torch.utils.data.DataLoader(tiny_dataset(), batch_size=per_rank)

    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    graddrop = GradDrop(GradDropConfig(drop_rate=0.5, seed=1234)).attach(model, optimizer)

    for batch in loader:
        with accelerator.accumulate(model):
            accelerator.backward(model(**batch).loss)
            optimizer.step()
            optimizer.zero_grad()

    state = accelerator.get_state_dict(model)  # gathered from every shard
    if accelerator.is_main_process:
        save_file({k: v.contiguous() for k, v in state.items()}, f"{out}/final.safetensors")
        accelerator.print(f"{accelerator.distributed_type.value} on {accelerator.num_processes} "
                          f"processes: {graddrop.step} optimizer steps, GradDrop seed "
                          f"{graddrop.config.seed}")
    accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1])
