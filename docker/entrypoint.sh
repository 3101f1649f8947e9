#!/usr/bin/env bash
# Container entrypoint: optionally start sshd (DeepSpeed's pdsh runner reaches the other
# nodes over ssh), then hand everything to graddrop-launch.
#   GRADDROP_START_SSHD=1   start sshd on GRADDROP_SSH_PORT (default 22) first
#   GRADDROP_SSH_KEYS=/dir  copy authorized_keys / id_* from a mounted secret into ~/.ssh
set -euo pipefail

if [[ -n "${GRADDROP_SSH_KEYS:-}" ]]; then
    mkdir -p "${HOME}/.ssh" && chmod 700 "${HOME}/.ssh"
    cp "${GRADDROP_SSH_KEYS}"/* "${HOME}/.ssh/"
    chmod 600 "${HOME}"/.ssh/* 2>/dev/null || true
fi

if [[ "${GRADDROP_START_SSHD:-0}" == "1" ]]; then
    ssh-keygen -A >/dev/null
    /usr/sbin/sshd -p "${GRADDROP_SSH_PORT:-22}"
fi

exec "${GRADDROP_LAUNCH:-graddrop-launch}" "$@"
