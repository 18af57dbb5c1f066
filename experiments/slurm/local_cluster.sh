#!/bin/bash
# A real single-node SLURM cluster for tests: experiments/slurm/local_cluster.sh start|stop|status
#
# Everything lives under $CLUSTER_DIR (default /tmp/ccloss-slurm): slurm.conf, state, spool, logs, pid
# files and munge's socket. `start` prints the lines to export (SLURM_CONF and the munge socket);
# `stop` ends the daemons it started by their pid files. Needs root (munged and slurmd run as root
# here); installs slurm-wlm and munge with apt-get when sbatch is missing and the user is root.
# Settings for one node without systemd or cgroups (docs/more_gpus.md): proctrack/linuxproc,
# task/none, no accounting, cons_tres with CR_CPU, ReturnToService=2.
set -euo pipefail

DIR="${CLUSTER_DIR:-/tmp/ccloss-slurm}"
CPUS="${CLUSTER_CPUS:-$(nproc)}"
NODE="$(hostname -s)"
export SLURM_CONF="$DIR/slurm.conf"

install_if_missing() {
    if command -v sbatch >/dev/null && command -v munged >/dev/null; then return; fi
    if [ "$(id -u)" != 0 ]; then
        echo "slurm-wlm and munge are missing and this user is not root: install them (apt-get install slurm-wlm munge)" >&2
        exit 3
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {
    mkdir -p "$DIR"/{state,spool,log,run,munge}
    chmod 700 "$DIR/munge"
    if [ ! -f "$DIR/munge/munge.key" ]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        chmod 400 "$DIR/munge/munge.key"
    fi
    cat >"$SLURM_CONF" <<EOF
ClusterName=ccloss-test
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${CLUSTER_PORT:-6817}
SlurmdPort=$(( ${CLUSTER_PORT:-6817} + 1 ))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
KillWait=10
MinJobAge=600
SchedulerType=sched/backfill
NodeName=$NODE CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    install_if_missing
    write_config
    munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed" --force
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 60); do
        if sinfo -h -o %t 2>/dev/null | grep -q idle; then
            echo "export SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.5
    done
    echo "the node did not become idle in 30 s; logs in $DIR/log" >&2
    exit 1
}

stop() {
    if [ -f "$DIR/run/slurmctld.pid" ] && kill -0 "$(cat "$DIR/run/slurmctld.pid")" 2>/dev/null; then
        scancel --quiet --full $(squeue -h -o %A) 2>/dev/null || true  # job steps outlive slurmd: end them first
        for _ in $(seq 60); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
    fi
    for daemon in slurmd slurmctld munged; do
        if [ -f "$DIR/run/$daemon.pid" ]; then
            kill "$(cat "$DIR/run/$daemon.pid")" 2>/dev/null || true
        fi
    done
    for daemon in slurmd slurmctld munged; do
        for _ in $(seq 50); do
            [ -f "$DIR/run/$daemon.pid" ] && kill -0 "$(cat "$DIR/run/$daemon.pid")" 2>/dev/null || break
            sleep 0.2
        done
        rm -f "$DIR/run/$daemon.pid"
    done
    rm -rf "$DIR/state" "$DIR/spool"
}

status() {
    sinfo && squeue
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: $0 start|stop|status" >&2 && exit 2 ;;
esac
