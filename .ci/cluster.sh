#!/bin/bash
# What the cluster tests need on this machine (Debian, root).
#
#   .ci/cluster.sh install   # apt packages, only those missing (~30 s cold)
set -euo pipefail
PKGS=(slurmctld slurmd slurm-client munge openmpi-bin mpich openssh-server)

install() {
    local missing=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then echo "cluster packages present"; return 0; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The image's policy-rc.d keeps the daemons from starting on install:
    # the lab scripts start them by hand.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "installed: ${missing[*]}"
}

"${1:?usage: cluster.sh install}"
