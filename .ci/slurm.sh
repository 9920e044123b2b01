#!/bin/bash
# A single-node Slurm on loopback for the cluster tests: munged, slurmctld
# and slurmd, all state under $LAB (default target/slurm-lab), started by
# hand (no systemd). Idempotent: `up` on a running lab does nothing;
# `down` stops what the pid files name and is safe to repeat.
#
#   .ci/slurm.sh up      # then: SLURM_CONF=$LAB/slurm.conf srun -n2 hostname
#   .ci/slurm.sh down
#   .ci/slurm.sh status
#
# Needs root and Debian's slurmctld slurmd slurm-client munge.
set -euo pipefail
cd "$(dirname "$0")/.."
LAB=${LAB:-$PWD/target/slurm-lab}
CONF=$LAB/slurm.conf
NODE=$(hostname)

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

ready() {
    SLURM_CONF=$CONF timeout 5 sinfo -h -t idle,mix,alloc -o %D 2>/dev/null | grep -qx 1
}

up() {
    if alive "$LAB/slurmctld.pid" && alive "$LAB/slurmd.pid" && ready; then
        echo "slurm lab already up ($CONF)"; return 0
    fi
    down >/dev/null 2>&1 || true
    mkdir -p "$LAB"/{state,spool,log,tmp} /run/munge
    chown munge:munge /run/munge
    if ! alive /run/munge/munged.pid; then
        runuser -u munge -- munged
        touch "$LAB/munged.ours"
    fi
    cat > "$CONF" <<CONF
ClusterName=mplab
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$LAB/state
SlurmdSpoolDir=$LAB/spool
TmpFS=$LAB/tmp
SlurmctldPidFile=$LAB/slurmctld.pid
SlurmdPidFile=$LAB/slurmd.pid
SlurmctldLogFile=$LAB/log/slurmctld.log
SlurmdLogFile=$LAB/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SlurmctldPort=16817
SlurmdPort=16818
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
CONF
    SLURM_CONF=$CONF slurmctld -f "$CONF"
    SLURM_CONF=$CONF slurmd -f "$CONF" -N "$NODE"
    for _ in $(seq 1 60); do
        if ready; then echo "slurm lab up ($CONF)"; return 0; fi
        sleep 0.5
    done
    echo "slurm did not come up; logs:" >&2
    tail -n 20 "$LAB"/log/*.log >&2 || true
    return 1
}

down() {
    # Jobs first, so that no step outlives the daemons.
    if alive "$LAB/slurmctld.pid"; then
        SLURM_CONF=$CONF timeout 5 scancel --full --quiet --user=root 2>/dev/null || true
    fi
    local pids=""
    local files=("$LAB/slurmd.pid" "$LAB/slurmctld.pid")
    # munged only if this lab started it.
    [ -e "$LAB/munged.ours" ] && files+=(/run/munge/munged.pid)
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
    rm -f "$LAB"/*.pid "$LAB/munged.ours"
    echo "slurm lab down"
}

status() { if ready; then echo up; else echo down; return 1; fi; }

"${1:?usage: slurm.sh up|down|status}"
