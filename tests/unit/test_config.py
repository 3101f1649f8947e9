"""GradDropConfig is validated at construction with one-line errors naming the field."""

from __future__ import annotations

import pytest

from graddrop_dist import GradDropConfig
from graddrop_dist.config import DEFAULT_HEAD


def test_defaults_are_documented_values():
    config = GradDropConfig()
    assert config.method == "graddrop" and config.granularity == "element"
    assert config.exclude == DEFAULT_HEAD and config.rescales is False
    assert GradDropConfig(method="childtuning-f").rescales is True


@pytest.mark.parametrize("kwargs,field,allowed", [
    (dict(method="dropout"), "graddrop.method", "graddrop-epoch"),
    (dict(granularity="column"), "graddrop.granularity", "element, row, tensor"),
    (dict(drop_rate=1.5), "graddrop.drop_rate", "[0, 1]"),
    (dict(p_top=-0.1), "graddrop.p_top", "[0, 1]"),
    (dict(drop_rate="half"), "graddrop.drop_rate", "float"),
    (dict(seed=1.5), "graddrop.seed", "int"),
    (dict(seed=-1), "graddrop.seed", "2**63"),
    (dict(rescale="yes"), "graddrop.rescale", "bool"),
    (dict(include="encoder.*"), "graddrop.include", "list of str"),
    (dict(unfreeze_epochs=0), "graddrop.unfreeze_epochs", ">= 1"),
    (dict(method="childtuning-f", rescale=False), "graddrop.rescale", "always rescales"),
    (dict(dropp_rate=0.5), "unknown field 'dropp_rate'", "drop_rate"),
])
def test_bad_values_name_the_field_and_what_is_allowed(kwargs, field, allowed):
    with pytest.raises(ValueError) as error:
        GradDropConfig(**kwargs)
    message = str(error.value)
    assert field in message and allowed in message and "\n" not in message


def test_lists_become_tuples_and_round_trip():
    config = GradDropConfig(include=["encoder.*"], drop_rate=1)
    assert config.include == ("encoder.*",) and config.drop_rate == 1.0
    assert GradDropConfig.from_dict(config.to_dict()) == config
    assert config.replace(seed=3).seed == 3


def test_config_is_immutable():
    with pytest.raises(AttributeError):
        GradDropConfig().seed = 4
