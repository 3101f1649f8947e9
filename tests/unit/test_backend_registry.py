"""One class per backend, found by name; the trainer never asks which one it has."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from graddrop_dist.backends import BACKEND_NAMES, Backend, backend_class, backend_spec
from graddrop_dist.backends.registry import REGISTRY
from graddrop_dist.trainer.job_config import BackendConfig

TRAINER = Path(__file__).resolve().parents[2] / "graddrop_dist" / "trainer"


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_each_registered_backend_is_a_backend_named_once(name):
    backend = backend_class(name)
    assert issubclass(backend, Backend) and backend.name == name
    spec = backend_spec(name)  # what it is, said once, torch-free
    assert set(spec.required) <= set(spec.options) <= set(BackendConfig().defaults())
    assert not {"adapter", "options", "required", "distributed", "can_reshard"} & \
        set(vars(backend))  # nothing the registry says is said again by the class


def test_the_config_allows_exactly_the_registered_names():
    field = typing.get_type_hints(BackendConfig)["name"]
    assert typing.get_args(field) == tuple(REGISTRY) == BACKEND_NAMES


def test_an_unknown_name_is_one_line():
    with pytest.raises(ValueError, match="backend.name: expected one of single, ddp, fsdp1, "
                                         "fsdp2, deepspeed, got 'horovod'"):
        backend_class("horovod")


@pytest.mark.parametrize("path", sorted(TRAINER.glob("*.py")), ids=lambda p: p.name)
def test_the_trainer_never_branches_on_a_backend_name(path):
    names = "|".join(re.escape(name) for name in BACKEND_NAMES)
    pattern = re.compile(rf"""(==|!=|\bin)\s*\(?["']({names})["']|backend\.name\s*(==|!=|in\b)""")
    assert not pattern.search(path.read_text()), f"{path.name} asks which backend it has"
