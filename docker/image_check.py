"""`make image-check`: build the images with buildah from the Dockerfiles as shipped, and
run the CPU image for real.

    python docker/image_check.py [--images cpu,gpu] [--keep]

Only what no registry or index may offer is substituted, through the Dockerfiles' own
build arguments and optional secrets:

- BASE: the real base when a registry answers; otherwise a local Debian bookworm made
  with mmdebstrap (python3, python3-venv and python3-dev on it: what the Dockerfiles and
  DeepSpeed's JIT-built ops use from python:3.11-slim). The
  GPU image's CUDA base cannot be made so; its later layers are built on this one;
- TORCH_INDEX: the CPU torch index when it answers; otherwise the ordinary package index;
- pip_conf / host_ca secrets and read-only volumes: this machine's pip configuration
  (its indexes, local wheel folders and CA bundle), so a build reaches what pip reaches
  here.

Builds run with `--isolation chroot` (what works inside containers and sandboxes). In the
CPU image it then runs `graddrop-train --help`, the C mask kernel's build, the offline
demo's recipe for 2 steps on 2 ranks, and compares the image's Python packages with
constraints.txt; the GPU image gets the same package comparison and an import of the
package. It prints build times and image sizes, and exits 1 naming what failed. buildah
and mmdebstrap are installed with apt-get when missing and this runs as root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCAL_BASE = "localhost/graddrop-base:bookworm"
REAL_BASE = {"cpu": "docker.io/library/python:3.11-slim-bookworm",
             "gpu": "docker.io/nvidia/cuda:13.0.0-devel-ubuntu24.04"}
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
DEMO = ["train.max_steps=2", "task.languages=[de]", "output.export_hf=false",
        "output.dir=/tmp/demo"]


class CheckFailed(RuntimeError):
    pass


def run(argv: list[str], timeout: int = 3600, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-15:]
        raise CheckFailed(f"{' '.join(argv[:4])} ...: exit {done.returncode}\n" +
                          "\n".join(tail))
    return done


def ensure_tools() -> None:
    missing = [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise CheckFailed(f"{', '.join(missing)} missing: install them (Debian/Ubuntu: "
                          f"apt-get install {' '.join(missing)}) or run as root")
    run(["apt-get", "update", "-qq"])
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def reachable(url_host: str, port: int = 443) -> bool:
    try:
        socket.create_connection((url_host, port), timeout=5).close()
        return True
    except OSError:
        return False


def base_for(image: str) -> tuple[str, bool]:
    """(the base to build on, whether it is the real one)."""
    pulled = subprocess.run(["buildah", "pull", "-q", REAL_BASE[image]], capture_output=True,
                            text=True, timeout=600)
    if pulled.returncode == 0:
        return REAL_BASE[image], True
    have = subprocess.run(["buildah", "images", "-q", LOCAL_BASE], capture_output=True,
                          text=True, timeout=60)
    if not have.stdout.strip():
        with tempfile.TemporaryDirectory() as folder:
            rootfs = Path(folder) / "rootfs.tar"
            run(["mmdebstrap", "--quiet", "--variant=minbase",
                 "--include=ca-certificates,python3,python3-venv,python3-dev", "bookworm",
                 str(rootfs)])
            container = run(["buildah", "from", "scratch"]).stdout.strip()
            try:
                run(["buildah", "add", container, str(rootfs), "/"])
                run(["buildah", "config", "--env",
                     "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "--cmd", "/bin/bash", container])
                run(["buildah", "commit", "-q", container, LOCAL_BASE])
            finally:
                subprocess.run(["buildah", "rm", container], capture_output=True)
    return LOCAL_BASE, False


def pip_settings() -> dict[str, list[str]]:
    """This machine's pip indexes, wheel folders and CA bundle (config files and env)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                            capture_output=True, text=True, timeout=60).stdout
    found: dict[str, list[str]] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        name = key.split(".", 1)[-1]
        if name in ("index-url", "extra-index-url", "find-links", "cert"):
            found.setdefault(name, []).extend(value.strip().strip("'\"").split())
    for name in ("index-url", "extra-index-url", "find-links", "cert"):
        env = os.environ.get(f"PIP_{name.upper().replace('-', '_')}")
        if env:
            found[name] = env.split()
    return found


def build_options(settings: dict[str, list[str]], folder: Path) -> list[str]:
    """Secrets and read-only volumes that give a build this machine's pip."""
    ca = Path((settings.get("cert") or ["/etc/ssl/certs/ca-certificates.crt"])[0])
    lines = ["[global]", "cert = /run/secrets/host_ca"]
    volumes = set()
    for name in ("index-url", "extra-index-url", "find-links"):
        if settings.get(name):
            lines.append(f"{name} = {' '.join(settings[name])}")
            for value in settings[name]:
                local = value.removeprefix("file://")
                if local.startswith("/") and Path(local).exists():
                    volumes.add(str(Path(local).parent if local.endswith("/simple") else local))
    conf = folder / "pip.conf"
    conf.write_text("\n".join(lines) + "\n")
    options = ["--secret", f"id=pip_conf,src={conf}"]
    if ca.is_file():
        options += ["--secret", f"id=host_ca,src={ca}"]
    for path in sorted(volumes):
        options += ["--volume", f"{path}:{path}:ro"]
    return options


def build(image: str, base: str, real: bool, options: list[str], torch_index: str) -> float:
    args = ["--build-arg", f"BASE={base}"]
    if image == "cpu":
        args += ["--build-arg", f"TORCH_INDEX={torch_index}"]
    started = time.monotonic()
    run(["buildah", "bud", "--isolation", "chroot", "--layers", *(["--pull=never"] if not real
                                                                 else []),
         "-f", str(REPO / "docker" / f"Dockerfile.{image}"), *args, *options,
         "-t", f"localhost/graddrop-dist:{image}", str(REPO)], timeout=5400)
    return time.monotonic() - started


def inside(container: str, *command: str, timeout: int = 1800) -> str:
    # --hostname localhost: torchrun --standalone rendezvous on the hostname, which Docker
    # makes resolvable in a container and chroot isolation does not.
    return run(["buildah", "run", "--isolation", "chroot", "--hostname", "localhost",
                container, "--", *command], timeout=timeout).stdout


def compare_with_constraints(freeze: str) -> list[str]:
    """Packages whose release in the image differs from constraints.txt."""
    pinned = dict(line.lower().split("==") for line in
                  (REPO / "constraints.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    found = dict(line.lower().split("==") for line in freeze.splitlines() if "==" in line)
    normal = {k.replace("_", "-"): v for k, v in found.items()}
    return [f"{name} {normal[name]} (constraints.txt: {version})"
            for name, version in ((k.replace("_", "-"), v) for k, v in pinned.items())
            if name in normal and normal[name].split("+")[0] != version.split("+")[0]]


def check_cpu(container: str) -> list[str]:
    problems = []
    venv = "/opt/graddrop-dist/.venv/bin"
    if "usage: graddrop-train" not in inside(container, "graddrop-train", "--help"):
        problems.append("graddrop-train --help printed no usage")
    kernel = inside(container, f"{venv}/python", "-c", "from graddrop_dist.mask import fused; "
                    "print(fused.fused_available(), fused.isa())")
    if not kernel.startswith("True"):
        problems.append(f"the C mask kernel did not build: {kernel.strip()}")
    demo = inside(container, "make", "demo", "DEMO_ARGS=" + " ".join(DEMO), timeout=3000)
    if "results in /tmp/demo/results.json" not in demo:
        problems.append("make demo (the image's CMD) did not finish: " + demo.strip()[-300:])
    direct = inside(container, "graddrop-train", "offline-demo", "--dry-run")
    if "dry run" not in direct.lower():
        problems.append("graddrop-train outside make did not find the recipe and its assets: "
                        + direct.strip()[-300:])
    problems += compare_with_constraints(inside(container, f"{venv}/python", "-m", "pip",
                                                "freeze"))
    return problems


def check_gpu(container: str) -> list[str]:
    problems = compare_with_constraints(inside(container, "/opt/venv/bin/python", "-m", "pip",
                                               "freeze"))
    shown = inside(container, "/opt/venv/bin/python", "-c", "import graddrop_dist.trainer.cli, "
                   "graddrop_launcher.cli; print('ok')")
    if shown.strip() != "ok":
        problems.append("the package does not import in the GPU image")
    return problems


def size_of(image: str) -> str:
    return run(["buildah", "images", "--format", "{{.Size}}",
                f"localhost/graddrop-dist:{image}"]).stdout.strip()


def check(image: str, options: list[str], torch_index: str) -> tuple[list[str], str]:
    base, real = base_for(image)
    seconds = build(image, base, real, options, torch_index)
    container = run(["buildah", "from", f"localhost/graddrop-dist:{image}"]).stdout.strip()
    try:
        problems = check_cpu(container) if image == "cpu" else check_gpu(container)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
    note = "" if real else (f" on {LOCAL_BASE} (the real base {REAL_BASE[image]} could not "
                            "be pulled)")
    return problems, f"{image}: built in {seconds:.0f} s{note}, {size_of(image)}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="cpu,gpu")
    args = parser.parse_args(argv)
    try:
        ensure_tools()
        torch_index = CPU_TORCH_INDEX if reachable("download.pytorch.org") else ""
        failed = False
        with tempfile.TemporaryDirectory() as folder:
            options = build_options(pip_settings(), Path(folder))
            for image in args.images.split(","):
                problems, summary = check(image, options, torch_index)
                print(f"image-check: {summary}", flush=True)
                for problem in problems:
                    print(f"image-check: {image}: {problem}", file=sys.stderr)
                failed = failed or bool(problems)
    except (CheckFailed, subprocess.TimeoutExpired) as error:
        print(f"image-check: {error}", file=sys.stderr)
        return 1
    if not torch_index:
        print("image-check: the CPU torch index was not reachable: torch came from the "
              "ordinary package index")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
