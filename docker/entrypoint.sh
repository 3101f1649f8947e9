#!/usr/bin/env bash
# Container entrypoint: optionally start sshd (DeepSpeed's pdsh runner reaches the other
# nodes over ssh), then hand everything to graddrop-launch.
#   GRADDROP_START_SSHD=1   start sshd on GRADDROP_SSH_PORT (default 22) first
#   GRADDROP_SSH_KEYS=/dir  copy authorized_keys / id_* from a mounted secret into ~/.ssh
#   GRADDROP_SSH_HOST_KEYS=/dir  ssh_host_*_key(.pub) shared by every node (mounted secret)
# Each container would otherwise generate its own host keys, which no other node knows:
# ssh stops at "Host key verification failed" and pdsh fails on first contact. So the
# client accepts a node's key the first time it sees it (and refuses a changed one) and
# talks to GRADDROP_SSH_PORT on every node.
set -euo pipefail

if [[ -n "${GRADDROP_SSH_KEYS:-}" ]]; then
    mkdir -p "${HOME}/.ssh" && chmod 700 "${HOME}/.ssh"
    cp "${GRADDROP_SSH_KEYS}"/* "${HOME}/.ssh/"
    chmod 600 "${HOME}"/.ssh/* 2>/dev/null || true
fi

if [[ "${GRADDROP_START_SSHD:-0}" == "1" ]]; then
    if [[ -n "${GRADDROP_SSH_HOST_KEYS:-}" ]]; then
        cp "${GRADDROP_SSH_HOST_KEYS}"/ssh_host_* /etc/ssh/
        chmod 600 /etc/ssh/ssh_host_*_key
    fi
    ssh-keygen -A >/dev/null  # only the key types still missing
    mkdir -p /etc/ssh/ssh_config.d
    printf 'Host *\n    StrictHostKeyChecking accept-new\n    Port %s\n' \
        "${GRADDROP_SSH_PORT:-22}" > /etc/ssh/ssh_config.d/graddrop.conf
    /usr/sbin/sshd -p "${GRADDROP_SSH_PORT:-22}"
fi

exec "${GRADDROP_LAUNCH:-graddrop-launch}" "$@"
