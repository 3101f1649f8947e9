"""Every private attribute of torch, DeepSpeed and accelerate that graddrop-dist reaches,
in one place, each behind a function that says what it is for.

The public hooks do not reach far enough: DDP cannot list or unregister its communication
hook, FSDP1 hands a hook its flat gradient without the layout of the parameters in it,
FSDP2's custom reduce-scatter must subclass a class of a private module and read the
parameter groups to know the buffer's layout, DeepSpeed has no hook on its optimizer step,
on the reduction of a gradient bucket or its data-parallel group for a module outside the
engine, accelerate no public "is a state set up". A release can move any of these
silently or loudly, so:

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


def deepspeed_before_bucket_reduction(optimizer, mask):
    """Call `mask(flat, spans)` right before DeepSpeed's ZeRO optimizer reduces a bucket of
    gradients: `flat` holds them, `spans` says what each occupies, (param, start, numel).
    One call a bucket instead of Python hooks on every parameter, which cost a ZeRO step
    2-3% on a small model. A handle, or None where the optimizer reduces otherwise (ZeRO-0
    and the engine's bf16 / fp16 optimizers, ZeRO-1/2 without contiguous_gradients): there
    tensor hooks mask. ZeRO-1/2 reduce a bucket in `average_tensor` (the bucket's buffer,
    or alone a parameter larger than a bucket); ZeRO-3 in its name-mangled
    `__reduce_and_partition_ipg_grads`, where each `param.grad` is a view of the bucket's
    buffer or, when it did not fit, a tensor of its own."""
    from deepspeed.runtime.zero.stage3 import DeepSpeedZeroOptimizer_Stage3
    from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

    if isinstance(optimizer, DeepSpeedZeroOptimizer_Stage3):
        return _Shadow(optimizer, "_DeepSpeedZeroOptimizer_Stage3__reduce_and_partition_ipg_grads",
                       lambda original: _before_zero3_reduction(optimizer, mask, original))
    if isinstance(optimizer, DeepSpeedZeroOptimizer) and optimizer.contiguous_gradients:
        return _Shadow(optimizer, "average_tensor",
                       lambda original: _before_zero12_reduction(optimizer, mask, original))
    return None


def _before_zero12_reduction(optimizer, mask, average_tensor):
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()

    def masked_average_tensor(tensor, communication_data_type):
        bucket = optimizer.ipg_buckets[communication_data_type]
        spans, start = [], 0
        for group, index, _ in bucket.params:
            param = optimizer.bit16_groups[group][index]
            spans.append((param, start, param.numel()))
            start += param.numel()
        if start != tensor.numel():
            raise RuntimeError(f"GradDrop under DeepSpeed: a bucket of {tensor.numel()} "
                               f"elements holds parameters of {start}")
        ordered = not accelerator.resolves_data_dependency()  # a GPU's streams
        if ordered:  # after every copy into the bucket, whatever stream made it
            for stream in bucket.copy_streams:
                accelerator.current_stream().wait_stream(stream)
        mask(tensor, spans)
        if ordered:  # and the reduction after the mask, as DeepSpeed orders it after a copy
            if optimizer.overlap_comm:
                bucket.copy_streams.add(accelerator.current_stream())
            optimizer._record_bucket_producer(bucket)
        return average_tensor(tensor, communication_data_type)

    return masked_average_tensor


def _before_zero3_reduction(optimizer, mask, reduce_and_partition):
    from deepspeed.accelerator import get_accelerator

    def masked_reduce_and_partition(communication_data_type):
        # On the stream that filled the bucket (and waited for the backward's): the
        # reduction that follows runs there too.
        with get_accelerator().stream(optimizer.reduce_and_partition_stream):
            _mask_zero3_bucket(optimizer, mask, communication_data_type)
        return reduce_and_partition(communication_data_type)

    return masked_reduce_and_partition


def _mask_zero3_bucket(optimizer, mask, communication_data_type) -> None:
    bucket = optimizer.ipg_buckets[communication_data_type]
    buffer, spans = bucket.buffer, []
    for param in bucket.params:
        grad = param.grad
        start = -1 if buffer is None else (grad.data_ptr() - buffer.data_ptr()) // \
            grad.element_size()
        if 0 <= start and start + grad.numel() <= buffer.numel() \
                and grad.dtype == buffer.dtype:
            spans.append((param, start, grad.numel()))
        else:  # a gradient too large for the bucket stays where it was
            mask(grad, [(param, 0, grad.numel())])
    if spans:
        mask(buffer, spans)


def deepspeed_reduction_dtypes(optimizer, params) -> set | None:
    """The dtypes a ZeRO optimizer reduces these parameters' gradients in (None: not a
    ZeRO optimizer, which has no buckets)."""
    comm_dtype = getattr(optimizer, "get_param_comm_dtype", None)
    return None if comm_dtype is None else {comm_dtype(param) for param in params}


class _Shadow:
    """One object's method replaced by `wrap(method)`: an instance attribute shadows the
    class's; remove() deletes it again."""

    def __init__(self, owner, name: str, wrap) -> None:
        self.owner, self.name = owner, name
        setattr(owner, name, wrap(getattr(owner, name)))

    def remove(self) -> None:
        self.owner.__dict__.pop(self.name, None)


def deepspeed_on_applied_step(engine, on_applied):
    """Call `on_applied()` after every optimizer step the engine applies (DeepSpeed has no
    hook on its optimizer step: engine.step is wrapped); a handle."""
    def wrap(original):
        def step(*args, **kwargs):
            before = engine.global_steps, engine.skipped_steps
            result = original(*args, **kwargs)
            # global_steps also counts a step the engine skipped (an fp16 overflow, a
            # non-finite gradient): only an applied step counts.
            if engine.global_steps != before[0] and engine.skipped_steps == before[1]:
                on_applied()
            return result

        return step

    return _Shadow(engine, "step", wrap)


# ----------------------------------------------------------------------------- accelerate
def accelerate_distributed_type():
    """accelerate's DistributedType of this process, None when no accelerate state is set
    up (AcceleratorState() would create one)."""
    from accelerate.state import AcceleratorState

    return AcceleratorState().distributed_type if AcceleratorState._shared_state else None
