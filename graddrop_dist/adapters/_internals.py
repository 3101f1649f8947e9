"""Every private attribute of torch, DeepSpeed and accelerate that graddrop-dist reaches,
in one place, each behind a function that says what it is for.

The public hooks do not reach far enough: DDP cannot list or unregister its communication
hook, FSDP1 hands a hook its flat gradient without the layout of the parameters in it,
FSDP2's custom reduce-scatter must subclass a class of a private module and read the
parameter groups to know the buffer's layout, DeepSpeed has no hook on its optimizer step
or its data-parallel group for a module outside the engine, accelerate no public "is a
state set up". A release can move any of these silently or loudly, so:

- they were checked on the releases graddrop_dist/versions.py names in TESTED (torch
  2.13, DeepSpeed 0.19, accelerate 1.15), which warns once when a newer one is installed;
- tests/unit/test_internals.py (the canary) exercises every function here on real objects
  and fails with one line naming the function and the release when one moved.

Nothing outside this module touches a private attribute of those libraries (the layering
test greps for it).
"""

from __future__ import annotations

from collections import OrderedDict

import torch

# ----------------------------------------------------------------------------- autograd
def current_graph_task() -> int | None:
    """The id of the backward running now (-1 outside one; None: this torch cannot tell).
    Ids are not reused, so a change of id is a new backward."""
    probe = getattr(torch._C, "_current_graph_task_id", None)
    return None if probe is None else probe()


def will_engine_execute(node) -> bool | None:
    """Whether the running backward executes `node` (None: this torch cannot tell)."""
    probe = getattr(torch._C, "_will_engine_execute_node", None)
    if probe is None:
        return None
    try:
        return bool(probe(node))
    except RuntimeError:  # asked outside a backward, or under autograd.grad for a leaf
        return False


def move_post_accumulate_hook_first(param: torch.Tensor, handle) -> bool:
    """Run a post-accumulate-grad hook before those registered earlier (DeepSpeed's
    reduction hooks); False where this torch keeps them otherwise than in an OrderedDict."""
    hooks = getattr(param, "_post_accumulate_grad_hooks", None)
    if not isinstance(hooks, OrderedDict) or handle.id not in hooks:
        return False
    hooks.move_to_end(handle.id, last=False)
    return True


# ----------------------------------------------------------------------------- DDP
def ddp_comm_hook_states(ddp) -> list:
    """The states of the communication hooks a DDP model was given (it keeps them as
    (hook, state) pairs and offers no way to read or remove them)."""
    return [state for _, state in ddp._comm_hooks]


# ----------------------------------------------------------------------------- FSDP1
def fsdp1_default_hooks():
    """torch's default FSDP1 communication hooks (DefaultState, allreduce_hook,
    reduce_scatter_hook), which a masking hook calls after masking."""
    from torch.distributed.algorithms._comm_hooks import default_hooks

    return default_hooks


def fsdp1_hybrid_strategies() -> set:
    """The hybrid sharding strategies, which FSDP1 gives no communication hook."""
    from torch.distributed.fsdp import ShardingStrategy

    return {ShardingStrategy.HYBRID_SHARD, ShardingStrategy._HYBRID_SHARD_ZERO2}


def fsdp1_flat_param(unit):
    """The flat parameter an FSDP1 unit owns (None for a unit without parameters)."""
    return None if unit._handle is None else unit._handle.flat_param


def fsdp1_flat_layout(flat) -> tuple[list[str], list[int], list[bool], list]:
    """(names of the parameters in the flat parameter, each span's numel in buffer order,
    whether each span is alignment padding, the parameters' shapes)."""
    return (list(flat._fqns), list(flat._numels_with_padding), list(flat._is_padding_mask),
            list(flat._shapes))


def fsdp1_states(root) -> list:
    """The FSDP state of every unit under `root`, units without parameters too."""
    from torch.distributed.fsdp._traversal_utils import _get_fsdp_states

    return _get_fsdp_states(root)


def fsdp1_set_comm_hook_state(state, hook_state) -> None:
    """register_comm_hook hands one state to every unit; a unit's own layout goes here."""
    state._comm_hook_state = hook_state


def fsdp1_clear_comm_hook(state) -> None:
    """FSDP1 has no way to unregister a communication hook."""
    state._comm_hook = None
    state._comm_hook_state = None


# ----------------------------------------------------------------------------- FSDP2
def fsdp2_default_reduce_scatter():
    """The class FSDP2's set_custom_reduce_scatter expects (defined in a private module)."""
    from torch.distributed.fsdp._fully_shard._fsdp_collectives import DefaultReduceScatter

    return DefaultReduceScatter


def fsdp2_param_groups(module) -> list:
    """The parameter groups of an FSDP2 module (what decides its reduce-scatter buffer)."""
    return module._get_fsdp_state()._fsdp_param_groups


def fsdp2_group_params(group) -> list[tuple[torch.Tensor, int, tuple[int, ...]]]:
    """(sharded parameter, sharded dim, unsharded size) of each parameter in buffer order."""
    return [(p.sharded_param, p.fsdp_placement.dim, tuple(p._orig_size))
            for p in group.fsdp_params]


def fsdp2_group_mesh(group) -> tuple:
    """(the shard process group, its size) of a parameter group."""
    return group.mesh_info.shard_process_group, group.mesh_info.shard_mesh_size


def fsdp2_clear_all_reduce_hook(group) -> None:
    """FSDP2 has no public way to unset set_all_reduce_hook."""
    group._all_reduce_hook = None


# ----------------------------------------------------------------------------- DeepSpeed
def deepspeed_data_parallel_group():
    """The data-parallel group of the running DeepSpeed job (for a module outside its
    engine, which is what a Hugging Face Trainer callback is handed)."""
    from deepspeed.utils import groups

    return groups._get_data_parallel_group()


def deepspeed_cpu_has_fp16() -> bool:
    """What DeepSpeed's CPU accelerator asks before it accepts fp16."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        return False


class _EngineStep:
    """engine.step wrapped: DeepSpeed has no hook on its optimizer step. An instance
    attribute shadows the method; remove() deletes it again."""

    def __init__(self, engine, on_applied) -> None:
        self.engine, self.original = engine, engine.step

        def step(*args, **kwargs):
            before = engine.global_steps, engine.skipped_steps
            result = self.original(*args, **kwargs)
            # global_steps also counts a step the engine skipped (an fp16 overflow, a
            # non-finite gradient): only an applied step counts.
            if engine.global_steps != before[0] and engine.skipped_steps == before[1]:
                on_applied()
            return result

        engine.step = step

    def remove(self) -> None:
        self.engine.__dict__.pop("step", None)


def deepspeed_on_applied_step(engine, on_applied):
    """Call `on_applied()` after every optimizer step the engine applies; a handle."""
    return _EngineStep(engine, on_applied)


# ----------------------------------------------------------------------------- accelerate
def accelerate_distributed_type():
    """accelerate's DistributedType of this process, None when no accelerate state is set
    up (AcceleratorState() would create one)."""
    from accelerate.state import AcceleratorState

    return AcceleratorState().distributed_type if AcceleratorState._shared_state else None
