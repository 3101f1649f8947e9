"""The scaling model of docs/SCALING.md: step time = compute + bytes on the wire / link
bandwidth (+ the mask's own passes), for dense and compacted GradDrop.

    python benchmarks/scaling_model.py      # the XLM-R-Large cluster table of SCALING.md

slow_link.py feeds the same `wire_bytes` and `step_seconds` this machine's measured
compute time, counted bytes and link rate, and prints the prediction beside the
measurement.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

# XLM-R-Large (graddrop_dist/recipes/models/xlm-roberta-large.json): 256.5M parameters in the embeddings
# (250002 x 1024 words), 302.3M in 24 layers, 1.05M in a 3-way classification head.
PARAMETERS = 559.9e6
LAYER_PARAMETERS = 302.3e6
# The XNLI recipe (xglue/xnli): 32 sequences of up to 256 tokens per step.
TOKENS_PER_STEP = 32 * 256
ATTENTION_FLOPS = 12 * 24 * 256 * 1024 * TOKENS_PER_STEP  # QK^T and AV, forward+backward


@dataclass(frozen=True)
class Hardware:
    """An 8-GPU node: H100 SXM, NVLink 4 inside, one 400 Gb/s InfiniBand NIC per GPU."""

    achieved_flops: float = 0.4 * 989e12  # bf16 dense peak at 40% utilisation
    hbm_bytes_per_s: float = 3.35e12
    nvlink_bus_bytes_per_s: float = 360e9  # NCCL all-reduce bus bandwidth in a node
    network_bytes_per_s: float = 45e9  # per GPU across nodes (400 Gb/s less overheads)
    gpus_per_node: int = 8


def wire_bytes(backend: str, gradient_bytes: float, parameter_bytes: float, world: int,
               drop_rate: float = 0.0, compact: bool = False, *,
               reduce_scatter_like_all_reduce: bool = False) -> float:
    """Bytes one rank sends per optimizer step in ring collectives over `world` ranks.
    DDP all-reduces the gradient (2 (W-1)/W of it); FSDP / ZeRO-3 reduce-scatter it
    ((W-1)/W; on gloo, measured, as much as an all-reduce) and all-gather the parameters
    twice (forward, and backward after resharding). Compaction sends only the kept
    (1 - p) of the gradient; it does not touch the parameter all-gathers."""
    share = (world - 1) / world
    gradient = gradient_bytes * ((1 - drop_rate) if compact else 1.0)
    if backend == "ddp":
        return 2 * share * gradient
    scatter = 2 * share if reduce_scatter_like_all_reduce else share
    return scatter * gradient + 2 * share * parameter_bytes


def step_seconds(compute_s: float, wire: float, link_bytes_per_s: float,
                 mask_s: float = 0.0) -> float:
    """Communication does not hide behind compute here: at these sizes it is the larger
    part, and the last bucket's reduction always waits for the end of the backward."""
    return compute_s + mask_s + wire / link_bytes_per_s


def cluster_step(nodes: int, backend: str, drop_rate: float, compact: bool,
                 hw: Hardware = Hardware()) -> dict:
    """XLM-R-Large, the XNLI recipe, bf16 gradients and parameters, `nodes` x 8 GPUs."""
    world = nodes * hw.gpus_per_node
    flops = 6 * LAYER_PARAMETERS * TOKENS_PER_STEP + ATTENTION_FLOPS
    compute = flops / (world * hw.achieved_flops)
    wire = wire_bytes(backend, 2 * PARAMETERS, 2 * PARAMETERS, world, drop_rate, compact)
    link = hw.nvlink_bus_bytes_per_s if nodes == 1 else hw.network_bytes_per_s
    # The mask reads and writes the full bf16 gradient on every rank (it runs before the
    # reduction); compaction adds a gather of the kept elements (read all, write 1 - p)
    # and, after the reduction, a scatter back.
    passes = 2 + ((2 - drop_rate) + (1 - drop_rate) if compact else 0)
    mask = passes * 2 * PARAMETERS / hw.hbm_bytes_per_s if drop_rate > 0 else 0.0
    return {"compute_ms": 1e3 * compute, "wire_gb": wire / 1e9, "mask_ms": 1e3 * mask,
            "step_ms": 1e3 * step_seconds(compute, wire, link, mask)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,2,4,8,16")
    args = parser.parse_args(argv)
    print("| nodes x 8 | backend | p | compute ms | GB sent per rank | mask ms | step ms "
          "dense | step ms compacted | compacted / dense |")
    print("|---|---|---|---|---|---|---|---|---|")
    for nodes in (int(n) for n in args.nodes.split(",")):
        for backend in ("ddp", "fsdp2"):
            for rate in (0.5, 0.9):
                dense = cluster_step(nodes, backend, rate, False)
                compact = cluster_step(nodes, backend, rate, True)
                print(f"| {nodes} | {backend} | {rate} | {dense['compute_ms']:.1f} | "
                      f"{dense['wire_gb']:.2f} -> {compact['wire_gb']:.2f} | "
                      f"{dense['mask_ms']:.2f} -> {compact['mask_ms']:.2f} | "
                      f"{dense['step_ms']:.1f} | {compact['step_ms']:.1f} | "
                      f"{compact['step_ms'] / dense['step_ms']:.2f} |")


if __name__ == "__main__":
    main()
