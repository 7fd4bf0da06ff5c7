#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the GlobusComputeEngine tests: munge,
# slurmctld and slurmd (Debian's slurm-wlm), one partition `debug` holding this host with all
# its CPUs. Idempotent: installs what is missing, (re)writes the configuration only when it
# changed, starts only daemons that are not running, then waits until the node is idle.
#
#   scripts/slurm.sh          # set up and start
#   scripts/slurm.sh --stop   # stop the daemons it started
#
# Needs root (or sudo). Accounting is off, so `sacct` fails and providers fall back to
# `squeue`; jobs run as the submitting user.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)

if [ "${1:-}" = "--stop" ]; then
    for d in slurmd slurmctld; do
        if pid=$(cat "/run/$d.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; then
            say "stopping $d ($pid)"
            as_root kill "$pid"
        fi
    done
    exit 0
fi

missing=()
for p in slurm-wlm munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# munge: a key, then the daemon.
if [ ! -s /etc/munge/munge.key ]; then
    as_root mungekey --create --keyfile=/etc/munge/munge.key
    as_root chown munge:munge /etc/munge/munge.key
    as_root chmod 0400 /etc/munge/munge.key
fi
if ! munge -n >/dev/null 2>&1; then
    say "starting munged"
    as_root install -d -o munge -g munge -m 0755 /run/munge
    as_root runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 20); do munge -n >/dev/null 2>&1 && break; sleep 0.25; done
    munge -n >/dev/null || { echo "munged did not start" >&2; exit 1; }
fi

want=$(cat <<CONF
# Written by scripts/slurm.sh: a one-node cluster for tests.
ClusterName=gcrs
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
)
changed=0
if [ "$(cat "$CONF" 2>/dev/null)" != "$want" ]; then
    say "writing $CONF"
    printf '%s\n' "$want" | as_root tee "$CONF" >/dev/null
    changed=1
fi
as_root install -d -m 0755 /var/spool/slurmd /var/spool/slurmctld /var/log/slurm

running() { pid=$(cat "/run/$1.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; }
if running slurmctld && [ $changed -eq 1 ]; then
    as_root scontrol reconfigure || true
fi
if ! running slurmctld; then
    say "starting slurmctld"
    as_root /usr/sbin/slurmctld
fi
if ! running slurmd; then
    say "starting slurmd"
    as_root /usr/sbin/slurmd
fi

# Ready when the node takes jobs.
for _ in $(seq 60); do
    state=$(sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null || true)
    case "$state" in
        idle*|mixed*|allocated*) exit 0 ;;
        down*|drain*) as_root scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
done
echo "Slurm node $NODE is not ready (state: ${state:-none}); see /var/log/slurm/" >&2
exit 1
