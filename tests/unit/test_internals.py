"""The canary: every private torch / DeepSpeed / accelerate attribute graddrop-dist
reaches (graddrop_dist/adapters/_internals.py) still means what it did, checked on real
objects. A release that moves one fails here in one line naming the function, instead of
masking silently wrong or failing deep inside a backward pass. And nothing outside that
module touches such an attribute."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import pytest
import torch

from graddrop_dist.adapters import _internals
from graddrop_dist.testing.local_ranks import run_ranks

REPO = Path(__file__).resolve().parents[2]
LIBRARIES = ("torch", "deepspeed", "accelerate", "transformers")


def canary(what: str, condition: bool) -> None:
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("torch", "deepspeed",
                                                                         "accelerate"))
    assert condition, f"_internals.{what} no longer works on {versions}"


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Linear(6, 2))


def test_autograd_internals():
    param = torch.nn.Parameter(torch.ones(3))
    seen, tasks = [], []
    handle = param.register_post_accumulate_grad_hook(lambda p: seen.append("ours"))

    def probe(grad):
        with torch.enable_grad():  # inside a backward grad mode is off
            node = param.view_as(param).grad_fn.next_functions[0][0]
        seen.append(_internals.will_engine_execute(node))
        tasks.append(_internals.current_graph_task())
        return grad

    param.register_post_accumulate_grad_hook(lambda p: seen.append("theirs"))
    canary("move_post_accumulate_hook_first", _internals.move_post_accumulate_hook_first(
        param, handle))
    param.register_hook(probe)
    with torch.enable_grad():
        (param * 2).sum().backward()
    canary("will_engine_execute", seen[0] is True)
    canary("current_graph_task", _internals.current_graph_task() == -1 and tasks[0] >= 0)
    canary("move_post_accumulate_hook_first", seen[1:] == ["ours", "theirs"])


def _distributed_internals(rank, world_size):
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel, fully_shard
    from torch.nn.parallel import DistributedDataParallel

    ddp = DistributedDataParallel(_tiny())
    ddp.register_comm_hook("state", lambda state, bucket: None)
    found = {"ddp_comm_hook_states": _internals.ddp_comm_hook_states(ddp) == ["state"]}
    fsdp1 = FullyShardedDataParallel(_tiny(), device_id=torch.device("cpu"),
                                     use_orig_params=True)
    flat = _internals.fsdp1_flat_param(fsdp1)
    fqns, numels, padding, shapes = _internals.fsdp1_flat_layout(flat)
    found["fsdp1_flat_layout"] = (
        fqns == ["0.weight", "0.bias", "1.weight", "1.bias"]
        and [tuple(s) for s in shapes] == [(6, 4), (6,), (2, 6), (2,)]
        and sum(n for n, p in zip(numels, padding) if not p) == 24 + 6 + 12 + 2)
    states = _internals.fsdp1_states(fsdp1)
    _internals.fsdp1_set_comm_hook_state(states[0], "unit state")
    found["fsdp1_set_comm_hook_state"] = states[0]._comm_hook_state == "unit state"
    _internals.fsdp1_clear_comm_hook(states[0])
    found["fsdp1_clear_comm_hook"] = states[0]._comm_hook is None
    hooks = _internals.fsdp1_default_hooks()
    found["fsdp1_default_hooks"] = all(hasattr(hooks, n) for n in (
        "DefaultState", "allreduce_hook", "reduce_scatter_hook"))
    found["fsdp1_hybrid_strategies"] = len(_internals.fsdp1_hybrid_strategies()) == 2
    fsdp2 = fully_shard(_tiny())
    (group,) = _internals.fsdp2_param_groups(fsdp2)
    params = _internals.fsdp2_group_params(group)
    found["fsdp2_group_params"] = [(dim, size) for _, dim, size in params] == [
        (0, (6, 4)), (0, (6,)), (0, (2, 6)), (0, (2,))]
    found["fsdp2_group_mesh"] = _internals.fsdp2_group_mesh(group)[1] == world_size
    found["fsdp2_default_reduce_scatter"] = callable(_internals.fsdp2_default_reduce_scatter())
    fsdp2.set_all_reduce_hook(lambda tensor: None)
    _internals.fsdp2_clear_all_reduce_hook(group)
    found["fsdp2_clear_all_reduce_hook"] = group._all_reduce_hook is None
    assert isinstance(fsdp2, FSDPModule)
    return found


def test_ddp_and_fsdp_internals():
    (found,) = run_ranks(_distributed_internals, 1, timeout=120)
    for what, works in found.items():
        canary(what, works)


def _deepspeed_engine(stage: int, **zero):
    import deepspeed

    # torch's AdamW: DeepSpeed's own would compile its CPU Adam first (80-90 s on 2 cores)
    config = {"train_micro_batch_size_per_gpu": 1,
              "zero_optimization": {"stage": stage, **zero},
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}}}
    model = _tiny()
    engine, *_ = deepspeed.initialize(model=model, config=config,
                                      model_parameters=model.parameters())
    return engine


def _bucket_seen(engine) -> bool:
    """Before the reduction, every parameter's span of a bucket holds its gradient."""
    names = {id(param): name for name, param in engine.module.named_parameters()}
    seen = {}

    def look(flat, spans):
        for param, start, numel in spans:
            seen[names[id(param)]] = flat.reshape(-1)[start:start + numel].clone()

    handle = _internals.deepspeed_before_bucket_reduction(engine.optimizer, look)
    x = torch.ones(1, 4)
    loss = engine(x).sum()
    engine.backward(loss)
    handle.remove()
    model = _tiny()  # the same weights: the gradients the bucket must hold
    model(x).sum().backward()
    want = {name: param.grad.reshape(-1) for name, param in model.named_parameters()}
    shadowed = {"average_tensor", "_DeepSpeedZeroOptimizer_Stage3__reduce_and_partition_ipg_grads"}
    return seen.keys() == want.keys() and not shadowed & vars(engine.optimizer).keys() and all(
        torch.equal(seen[name], want[name]) for name in want)


def _deepspeed_internals(rank, world_size):
    engine = _deepspeed_engine(1)
    applied = []
    handle = _internals.deepspeed_on_applied_step(engine, lambda: applied.append(1))
    loss = engine(torch.ones(1, 4)).sum()
    engine.backward(loss)
    engine.step()
    handle.remove()
    params = list(engine.module.parameters())
    found = {"deepspeed_on_applied_step": applied == [1] and "step" not in vars(engine),
             "deepspeed_data_parallel_group":
                 _internals.deepspeed_data_parallel_group() is not None,
             "deepspeed_cpu_has_fp16": isinstance(_internals.deepspeed_cpu_has_fp16(), bool),
             "deepspeed_reduction_dtypes":
                 _internals.deepspeed_reduction_dtypes(engine.optimizer, params)
                 == {torch.float32}}
    engine.destroy()
    # ZeRO-1 and ZeRO-3, with a bucket of 16 elements: some gradients (24 > 16) are reduced
    # alone (ZeRO-1) or from a tensor of their own (ZeRO-3)
    # What orders the mask among a GPU's streams (not run on the CPU, so looked up here).
    streams = {1: ("overlap_comm", "_record_bucket_producer"),
               3: ("reduce_and_partition_stream",)}
    for stage in (1, 3):
        engine = _deepspeed_engine(stage, reduce_bucket_size=16)
        buckets = engine.optimizer.ipg_buckets.values()
        found[f"deepspeed_before_bucket_reduction (ZeRO-{stage})"] = _bucket_seen(engine) \
            and all(hasattr(engine.optimizer, name) for name in streams[stage]) \
            and (stage == 3 or all(hasattr(bucket, "copy_streams") for bucket in buckets))
        engine.destroy()
    engine = _deepspeed_engine(1, contiguous_gradients=False)
    found["deepspeed_before_bucket_reduction (no contiguous_gradients: None)"] = \
        _internals.deepspeed_before_bucket_reduction(engine.optimizer, None) is None
    engine.destroy()
    return found


def test_deepspeed_internals():
    (found,) = run_ranks(_deepspeed_internals, 1, timeout=180)
    for what, works in found.items():
        canary(what, works)


def _accelerate_internals(rank, world_size):
    from accelerate import Accelerator
    from accelerate.state import DistributedType

    before = _internals.accelerate_distributed_type()
    Accelerator(cpu=True)  # under this rank's gloo process group: MULTI_CPU
    return {"accelerate_distributed_type": before is None and
            _internals.accelerate_distributed_type() == DistributedType.MULTI_CPU}


def test_accelerate_internals():
    (found,) = run_ranks(_accelerate_internals, 1, timeout=120)  # its own process's state
    for what, works in found.items():
        canary(what, works)


# --------------------------------------------------------------- nothing reaches past it
def private_reaches(path: Path) -> list[str]:
    """`x._name` attributes of anything but our own objects, and imports of underscored
    names or modules of torch, DeepSpeed, accelerate, transformers."""
    found = []
    tree = ast.parse(path.read_text())
    ours = {"self", "cls", "os", "sys", "_internals"}  # os._exit, sys._getframe
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ours):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: .{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] in LIBRARIES:
            parts = node.module.split(".") + [alias.name for alias in node.names]
            if any(part.startswith("_") for part in parts):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.module}")
    return found


def product_modules():
    internals = REPO / "graddrop_dist" / "adapters" / "_internals.py"
    return [p for p in sorted([*(REPO / "graddrop_dist").rglob("*.py"),
                               *(REPO / "launcher").rglob("*.py")]) if p != internals]


@pytest.mark.parametrize("path", product_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_private_attribute_outside_the_internals_module(path):
    assert private_reaches(path) == []


def test_the_grep_finds_what_it_looks_for(tmp_path):
    probe = REPO / "graddrop_dist" / "_probe_for_the_test.py"
    try:
        probe.write_text("import torch\nfrom torch.distributed.fsdp._traversal_utils import x"
                         "\ndef f(m):\n    return m._handle\n")
        assert len(private_reaches(probe)) == 2
    finally:
        probe.unlink()
