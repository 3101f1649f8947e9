"""The launcher, `import graddrop_dist` and job-config validation load no torch: a login
node's `graddrop-launch --dry-run` and a bad config's one-line error come back at once.
Each case runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = {
    "the launcher": "import graddrop_launcher.cli",
    "the package": "import graddrop_dist, graddrop_dist.backends, graddrop_dist.adapters",
    "a job config, parsed and validated": (
        "from graddrop_dist.trainer.job_file import load_job_config\n"
        "for name in ('offline-demo', 'xglue/xnli', 'study/cldr-emoji'):\n"
        "    load_job_config(name, ['train.micro_batch_size=4',\n"
        "                           'train.global_batch_size=32']).for_world_size(8)\n"
        "load_job_config(None, ['backend.name=fsdp1', 'backend.fsdp1_strategy=NO_SHARD'])\n"
        "try:\n"
        "    load_job_config('offline-demo', ['graddrop.compact=true'])\n"
        "except ValueError as error:\n"
        "    assert 'DeepSpeed has no hook' in str(error)\n"),
    "a sweep, loaded with its every job": (
        "from graddrop_dist.study.sweep_config import load_sweep\n"
        "load_sweep('study/cldr-emoji-sweep')\n"),
}


@pytest.mark.parametrize("what", CASES)
def test_no_torch_is_imported_by(what):
    code = CASES[what] + "\nimport sys\nprint(sorted(m for m in ('torch', 'deepspeed', " \
                         "'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"{what} imports {result.stdout.strip()}"


def test_the_lazy_names_are_the_real_ones():
    import graddrop_dist
    from graddrop_dist.algorithm import GradDrop
    from graddrop_dist.backends.base import Backend

    assert graddrop_dist.GradDrop is GradDrop
    assert graddrop_dist.backends.Backend is Backend
    from graddrop_dist.parallel import Backend as OldName, wrap  # the former name works

    assert OldName is Backend and wrap is graddrop_dist.backends.wrap
    with pytest.raises(AttributeError, match="has no attribute 'Missing'"):
        graddrop_dist.Missing  # noqa: B018
