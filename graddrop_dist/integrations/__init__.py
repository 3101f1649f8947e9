"""GradDrop inside other training loops: `hf` (the Hugging Face Trainer's callback).

accelerate needs no integration module: `GradDrop(config).attach(model, optimizer)` takes
the model and optimizer `accelerator.prepare` returns (examples/accelerate_loop.py).
"""
