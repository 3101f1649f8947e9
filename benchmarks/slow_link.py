"""Step time over a slow link between two "nodes": GradDrop compacted vs dense.

Two network namespaces joined by a veth pair whose both ends are shaped with tc's token
bucket filter (tbf: a rate; the veth itself adds microseconds of latency, and netem, which
could add more, is not in every kernel), one rank in each, gloo over the wire: the situation that
communication compaction (`GradDropConfig(compact=True)`: only kept gradient elements
travel) is for. For DDP, FSDP1 and FSDP2 and each drop rate it prints the median time of
an optimizer step compacted over dense, and the bytes each rank handed to the gradient
collectives. Dense and compacted runs alternate, so drift in the machine's load falls on
both. FSDP also all-gathers the parameters (forward and backward), which compaction does
not touch: that traffic is its floor.

    sudo python benchmarks/slow_link.py [--links none,1gbit,100mbit] [--rates 0.5,0.9]
        [--backends ddp,fsdp1,fsdp2] [--steps 4]

Needs root (ip netns, tc). It creates namespaces gdlink<pid>a/b holding the private
addresses 10.213.79.1/30 and 10.213.79.2/30 on a veth pair it creates, and removes them
on every exit (removing a namespace removes its end of the pair and its qdisc).
Goal: on 100 Mbit/s, compacted / dense <= 0.25 at p = 0.9 and <= 0.6 at 0.5.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

MODEL = {"vocab_size": 16000, "hidden_size": 256, "num_hidden_layers": 4,
         "num_attention_heads": 4, "intermediate_size": 1024, "max_position_embeddings": 72,
         "num_labels": 4}
ADDRESSES = ("10.213.79.1", "10.213.79.2")
GOALS = {0.9: 0.25, 0.5: 0.6}
# TCP payload per byte tbf counts: 1448 of every 1514 (MSS with timestamps, Ethernet frame).
PAYLOAD_SHARE = 1448 / 1514


def link_bytes_per_s(link: str) -> float:
    number, unit = link[:-4], link[-4:]
    return float(number) * {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[unit] / 8 * PAYLOAD_SHARE


def predicted(backend: str, measured: dict, unshaped: dict, link: str) -> float:
    """scaling_model's step time: the unshaped step (compute, and a link that costs
    almost nothing) plus what this configuration sends over the shaped link."""
    from scaling_model import step_seconds, wire_bytes

    # gloo's reduce-scatter puts as many bytes on the wire as its all-reduce: the drop in
    # step time per byte compaction saves is the same for FSDP as for DDP.
    wire = wire_bytes(backend, measured["bytes"], measured["parameter_bytes"], 2,
                      reduce_scatter_like_all_reduce=True)
    return step_seconds(unshaped["seconds"], wire, link_bytes_per_s(link))


def _ip(*args: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=30)


@contextmanager
def shaped_link(rate: str):
    """[(namespace, interface, address)] of two namespaces on a veth pair whose ends both
    send at `rate` (tc syntax: 100mbit; "none": unshaped); removed on exit."""
    tag = f"gdlink{os.getpid() % 100000}"
    hosts = [(f"{tag}a", f"{tag}a0", ADDRESSES[0]), (f"{tag}b", f"{tag}b0", ADDRESSES[1])]
    try:
        for namespace, _, _ in hosts:
            _ip("ip", "netns", "add", namespace)
        _ip("ip", "link", "add", hosts[0][1], "type", "veth", "peer", "name", hosts[1][1])
        for namespace, interface, address in hosts:
            _ip("ip", "link", "set", interface, "netns", namespace)
            _ip("ip", "addr", "add", f"{address}/30", "dev", interface, namespace=namespace)
            _ip("ip", "link", "set", interface, "up", namespace=namespace)
            _ip("ip", "link", "set", "lo", "up", namespace=namespace)
            if rate != "none":  # "none": the bare veth, to measure the compute alone
                _ip("tc", "qdisc", "add", "dev", interface, "root", "tbf", "rate", rate,
                    "burst", "512kb", "latency", "100ms", namespace=namespace)
        yield hosts
    finally:
        for namespace, _, _ in hosts:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


def worker(rank: int, port: int, backend: str, rate: float, compact: bool,
           steps: int) -> None:
    """One rank, inside its namespace: warm-up step, then `steps` timed steps."""
    import torch
    import torch.distributed as dist
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

    from communication_bytes import counted_collectives
    from graddrop_dist import GradDrop, GradDropConfig
    from graddrop_dist.backends import TrainSettings, wrap

    dist.init_process_group("gloo", init_method=f"tcp://{ADDRESSES[0]}:{port}", rank=rank,
                            world_size=2)
    torch.manual_seed(0)
    model = XLMRobertaForSequenceClassification(XLMRobertaConfig(**MODEL))
    parameters = sum(p.numel() for p in model.parameters())  # FSDP1 shows only its shard
    setup = wrap(model, backend, layer_classes=(XLMRobertaLayer,),
                 settings=TrainSettings(lr=1e-5))
    setup.attach(GradDrop(GradDropConfig(drop_rate=rate, compact=compact)))
    generator = torch.Generator().manual_seed(rank)

    def batch():
        return {"input_ids": torch.randint(3, MODEL["vocab_size"], (4, 64),
                                           generator=generator),
                "labels": torch.randint(0, MODEL["num_labels"], (4,), generator=generator)}

    setup.train_step([batch()])  # warm-up: allocation, first buckets
    times = []
    with counted_collectives(setup) as sent:
        for _ in range(steps):
            dist.barrier()
            start = time.perf_counter()
            setup.train_step([batch()])
            times.append(time.perf_counter() - start)
    setup.close()
    if rank == 0:
        print(json.dumps({"seconds": statistics.median(times), "bytes": sum(sent) / steps,
                          "parameter_bytes": 4 * parameters}))
    dist.destroy_process_group()


def measure(hosts, backend: str, rate: float, compact: bool, steps: int, port: int) -> dict:
    """Both ranks of one configuration, each in its namespace; rank 0's figures."""
    here = os.path.dirname(os.path.abspath(__file__))
    processes = []
    for rank, (namespace, interface, _) in enumerate(hosts):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": interface,
               "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
        processes.append(subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, os.path.abspath(__file__),
             "--worker", str(rank), str(port), backend, str(rate), str(int(compact)),
             str(steps)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=900)
        if process.returncode != 0:
            raise SystemExit(f"slow_link: a rank failed ({backend}, p={rate}, "
                             f"compact={compact}):\n{err[-3000:]}")
        outputs.append(out)
    return json.loads(outputs[0].strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", default="none,1gbit,100mbit")
    parser.add_argument("--rates", default="0.5,0.9")
    parser.add_argument("--backends", default="ddp,fsdp1,fsdp2")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        rank, port, backend, rate, compact, steps = args.worker
        return worker(int(rank), int(port), backend, float(rate), compact == "1", int(steps))
    if os.geteuid() != 0:
        raise SystemExit("slow_link: needs root (ip netns, tc)")
    print(f"2 ranks in 2 network namespaces, gloo over a veth pair shaped with tc tbf; "
          f"XLM-R hidden {MODEL['hidden_size']} x "
          f"{MODEL['num_hidden_layers']} layers, vocab {MODEL['vocab_size']}; median of "
          f"{args.steps} steps after one warm-up; element granularity")
    print("| link | backend | p | dense s/step (predicted) | compacted s/step (predicted) "
          "| time ratio | goal | dense MB | compacted MB | bytes ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    port, unshaped = 29400 + os.getpid() % 500, {}
    for link in args.links.split(","):
        with shaped_link(link) as hosts:
            for backend in args.backends.split(","):
                for rate in (float(r) for r in args.rates.split(",")):
                    port += 2
                    runs = {compact: measure(hosts, backend, rate, compact, args.steps,
                                             port + compact) for compact in (False, True)}
                    if link == "none":
                        unshaped.update({(backend, rate, c): r for c, r in runs.items()})
                    print(row(link, backend, rate, runs, unshaped), flush=True)


def row(link: str, backend: str, rate: float, runs: dict, unshaped: dict) -> str:
    dense, compact = runs[False], runs[True]
    cells = []
    for compacted, run in runs.items():
        base = unshaped.get((backend, rate, compacted))
        guess = predicted(backend, run, base, link) if base and link != "none" else None
        cells.append(f"{run['seconds']:.3f}" + (f" ({guess:.3f})" if guess else ""))
    goal = GOALS.get(rate) if link == "100mbit" else None
    return (f"| {link} | {backend} | {rate} | {cells[0]} | {cells[1]} | "
            f"{compact['seconds'] / dense['seconds']:.3f} | "
            f"{goal if goal is not None else '-'} | {dense['bytes'] / 1e6:.1f} | "
            f"{compact['bytes'] / 1e6:.1f} | {compact['bytes'] / dense['bytes']:.3f} |")


if __name__ == "__main__":
    main()
