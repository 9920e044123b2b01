#!/bin/bash
# Three fake hosts on this machine for the cluster tests: network
# namespaces mpfh0..2 (10.77.0.10-12/24) on a bridge that lives in its own
# namespace mpfhsw, no default route (nothing can leave), each "host" with
# its own hostname (node0..2, UTS namespace), hosts file, sshd and slurmd;
# slurmctld on node0; one munged for all (a filesystem socket). From
# shared/reference/distributed.md, appendix A. State under $LAB (default
# target/fakehosts). Idempotent; `down` stops what the pid files name and
# deletes the namespaces.
#
#   .ci/fakehosts.sh up | down | status
#   .ci/fakehosts.sh run N CMD...   # run CMD "on" node N
#
# Needs root, iproute2, util-linux (nsenter, unshare), and the packages of
# .ci/cluster.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
LAB=${LAB:-$PWD/target/fakehosts}
N=3
NS=mpfh
export SLURM_CONF=$LAB/slurm/slurm.conf

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Runs "$@" on host $1: its network namespace, a private mount namespace
# with its hosts file, its hostname.
host() {
    local i=$1; shift
    nsenter --net=/run/netns/$NS$i unshare --mount --uts \
        sh -c 'mount --bind /etc/netns/'$NS$i'/hosts /etc/hosts; hostname node'$i'; exec "$@"' host "$@"
}

ready() {
    [ -e /run/netns/${NS}0 ] && [ "$(host 0 timeout 5 sinfo -h -t idle,mix,alloc -o %D 2>/dev/null)" = "$N" ]
}

up() {
    if ready; then echo "fake hosts already up ($LAB)"; return 0; fi
    down >/dev/null 2>&1 || true
    mkdir -p "$LAB"/{ssh,slurm/state,slurm/log} /run/sshd /run/munge
    chmod 700 "$LAB/ssh"
    ip netns add ${NS}sw
    ip -n ${NS}sw link add br0 type bridge
    ip -n ${NS}sw link set br0 up
    for i in $(seq 0 $((N-1))); do
        ip netns add $NS$i
        ip link add ${NS}v$i type veth peer name eth0 netns $NS$i
        ip link set ${NS}v$i netns ${NS}sw
        ip -n ${NS}sw link set ${NS}v$i master br0 up
        ip -n $NS$i addr add 10.77.0.$((10+i))/24 dev eth0
        ip -n $NS$i link set eth0 up
        ip -n $NS$i link set lo up
        mkdir -p /etc/netns/$NS$i "$LAB/slurm/spool/node$i" "$LAB/slurm/tmp/node$i"
        { echo "127.0.0.1 localhost"; for j in $(seq 0 $((N-1))); do echo "10.77.0.$((10+j)) node$j"; done; } \
            > /etc/netns/$NS$i/hosts
    done
    [ -e "$LAB/ssh/hostkey" ] || ssh-keygen -q -t ed25519 -N '' -f "$LAB/ssh/hostkey"
    [ -e "$LAB/ssh/userkey" ] || ssh-keygen -q -t ed25519 -N '' -f "$LAB/ssh/userkey"
    cp "$LAB/ssh/userkey.pub" "$LAB/ssh/authorized_keys"
    printf 'HostKey %s/ssh/hostkey\nAuthorizedKeysFile %s/ssh/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\nAcceptEnv MULTIPROC_*\n' \
        "$LAB" "$LAB" > "$LAB/ssh/sshd_config"
    printf 'Host *\n  IdentityFile %s/ssh/userkey\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n  ServerAliveInterval 1\n  ServerAliveCountMax 3\n  SendEnv MULTIPROC_*\n' \
        "$LAB" > "$LAB/ssh/ssh_config"
    printf '#!/bin/sh\nexec ssh -F %s/ssh/ssh_config "$@"\n' "$LAB" > "$LAB/ssh/ssh"
    chmod +x "$LAB/ssh/ssh"
    for i in $(seq 0 $((N-1))); do
        host $i "$(command -v sshd)" -f "$LAB/ssh/sshd_config" -o ListenAddress=10.77.0.$((10+i)) \
            -o PidFile="$LAB/ssh/sshd.$i.pid"
    done
    chown munge:munge /run/munge
    if ! alive /run/munge/munged.pid; then
        runuser -u munge -- munged
        touch "$LAB/munged.ours"
    fi
    local S=$LAB/slurm
    cat > "$SLURM_CONF" <<CONF
ClusterName=mpfake
SlurmctldHost=node0(10.77.0.10)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool/%n
TmpFS=$S/tmp/%n
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.%n.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
NodeName=node0 NodeAddr=10.77.0.10 CPUs=2 RealMemory=1000
NodeName=node1 NodeAddr=10.77.0.11 CPUs=2 RealMemory=1000
NodeName=node2 NodeAddr=10.77.0.12 CPUs=2 RealMemory=1000
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
CONF
    host 0 slurmctld
    for i in $(seq 0 $((N-1))); do host $i slurmd -N node$i; done
    for _ in $(seq 1 60); do
        if ready; then echo "fake hosts up ($LAB)"; return 0; fi
        sleep 0.5
    done
    echo "the fake cluster's Slurm did not come up; logs:" >&2
    tail -n 20 "$LAB"/slurm/log/*.log >&2 || true
    return 1
}

down() {
    if [ -e /run/netns/${NS}0 ] && alive "$LAB/slurm/slurmctld.pid"; then
        host 0 timeout 5 scancel --full --quiet --user=root 2>/dev/null || true
    fi
    local files=("$LAB"/slurm/slurmd.*.pid "$LAB/slurm/slurmctld.pid" "$LAB"/ssh/sshd.*.pid)
    [ -e "$LAB/munged.ours" ] && files+=(/run/munge/munged.pid)
    local pids=""
    for f in "${files[@]}"; do
        if alive "$f"; then pids="$pids $(cat "$f")"; kill -TERM "$(cat "$f")" 2>/dev/null || true; fi
    done
    for _ in $(seq 1 50); do
        local left=""
        for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
        [ -z "$left" ] && break
        sleep 0.1
    done
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    for i in $(seq 0 $((N-1))); do
        ip netns del $NS$i 2>/dev/null || true
        rm -rf /etc/netns/$NS$i
    done
    ip netns del ${NS}sw 2>/dev/null || true
    rm -f "$LAB"/slurm/*.pid "$LAB"/ssh/*.pid "$LAB/munged.ours"
    echo "fake hosts down"
}

status() { if ready; then echo up; else echo down; return 1; fi; }

run() { local i=$1; shift; host "$i" "$@"; }

"${1:?usage: fakehosts.sh up|down|status|run N CMD...}" "${@:2}"
