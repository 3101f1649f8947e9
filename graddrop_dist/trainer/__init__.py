"""The graddrop-train job: config, data, loop, evaluation, checkpoints, export."""
