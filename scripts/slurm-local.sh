#!/usr/bin/env bash
# Start a throw-away single-node Slurm cluster on this machine (Debian's slurm-wlm), so that the
# tests exercise real sbatch/srun/requeue instead of a mock. Needs root. Idempotent: a rerun only
# checks, and says one line per thing it had to do.
set -euo pipefail
# Daemons and mungekey live in sbin, which a CI runner's root PATH does not always include.
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: $*" >&2; exit 1; }

CONF=/etc/slurm/slurm.conf
# Marks a slurm.conf as ours, the only kind this script may overwrite.
MARK="# written by sparse-rebasin scripts/slurm-local.sh: a throw-away test cluster"
BASE=/tmp/slurm-local
HOST=$(hostname -s)

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"

# Refuse before touching anything: a slurm.conf we did not write belongs to a real cluster.
if [ -f "$CONF" ] && ! grep -qxF "$MARK" "$CONF"; then
  die "$CONF exists and was not written by this script; not touching a real cluster's config"
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  say "installing slurm-wlm and munge with apt-get"
  # The package index of a fresh image is often stale or empty; update only when needed.
  apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq slurm-wlm munge >/dev/null; } \
    || die "apt-get could not install slurm-wlm and munge"
fi

# --- munge: slurm's daemons and clients authenticate every message with it ---
KEY=/etc/munge/munge.key
if [ ! -s "$KEY" ]; then
  say "creating $KEY"
  install -d -o munge -g munge -m 0700 /etc/munge
  mungekey --create --keyfile="$KEY" 2>/dev/null || dd if=/dev/urandom of="$KEY" bs=1024 count=1 status=none
fi
if [ "$(stat -c '%U %a' "$KEY")" != "munge 400" ]; then
  say "setting owner munge and mode 0400 on $KEY"
  chown munge:munge "$KEY"
  chmod 0400 "$KEY"
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "starting munged"
  # /run is a tmpfs on most machines, so the socket directory vanishes on reboot.
  install -d -o munge -g munge -m 0755 /run/munge
  # A munged killed uncleanly leaves its socket behind and refuses to start; --force takes it over.
  runuser -u munge -- /usr/sbin/munged 2>/dev/null || runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# --- slurm.conf ---
cpus=$(nproc)
# Slurm drains a node that reports less memory than configured; leave a margin below the total.
mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
conf=$(cat <<EOF
$MARK
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits cred_expire seconds (default 120) before it may start again; tests requeue.
AuthInfo=cred_expire=10
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
# No cgroups: containers and CI runners rarely give us a writable cgroup tree.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
# Nothing wakes the scheduler when a requeued job's begin time passes; poll often, not every 30-60 s.
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# A node that was down because slurmd stopped comes back by itself when slurmd returns.
ReturnToService=2
# Short waits keep test runs (timeouts, cancellations, requeues) fast.
KillWait=10
MinJobAge=30
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)

pid_alive() {  # pid file, process name
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

stop_daemon() {  # pid file, process name
  pid_alive "$1" "$2" || return 0
  say "stopping $2 to load the new slurm.conf"
  kill "$(cat "$1")"
  for _ in $(seq 100); do pid_alive "$1" "$2" || return 0; sleep 0.1; done
  die "$2 did not stop"
}

install -d -m 0755 "$BASE" "$BASE/state" "$BASE/spool" "$BASE/log" /etc/slurm
if [ "$(cat "$CONF" 2>/dev/null)" != "$conf" ]; then
  # Daemons read slurm.conf only at start, and a changed node definition needs a fresh start.
  stop_daemon "$BASE/slurmd.pid" slurmd
  stop_daemon "$BASE/slurmctld.pid" slurmctld
  say "writing $CONF (node $HOST, $cpus CPUs, ${mem_mb} MiB)"
  printf '%s\n' "$conf" > "$CONF"
fi

# --- daemons ---
if ! pid_alive "$BASE/slurmctld.pid" slurmctld; then
  say "starting slurmctld"
  slurmctld || die "slurmctld failed to start; $(tail -n 20 "$BASE/log/slurmctld.log" 2>/dev/null)"
fi
if ! pid_alive "$BASE/slurmd.pid" slurmd; then
  say "starting slurmd"
  slurmd || die "slurmd failed to start; $(tail -n 20 "$BASE/log/slurmd.log" 2>/dev/null)"
fi

# --- wait until the node takes jobs ---
resumed=0
state=""
for _ in $(seq 60); do
  state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null | head -n 1 || true)
  case "$state" in
    idle|mix|alloc|comp) break ;;
    # A node drained or marked down by an earlier run (unclean stop, config change) stays so
    # until told otherwise; a trailing '*' means slurmd is not answering yet, so just wait.
    down|drain|drng|drained|fail)
      if [ "$resumed" -eq 0 ]; then
        say "resuming node $HOST (was $state)"
        scontrol update nodename="$HOST" state=resume || true
        resumed=1
      fi ;;
  esac
  sleep 0.5
done
case "$state" in
  idle|mix|alloc|comp) ;;
  *)
    echo "slurm-local: node $HOST did not become idle within 30 s (state '${state:-none}')" >&2
    sinfo -N -l >&2 || true
    for f in "$BASE/log/slurmctld.log" "$BASE/log/slurmd.log"; do
      echo "--- tail of $f" >&2
      tail -n 20 "$f" >&2 2>/dev/null || true
    done
    exit 1 ;;
esac
say "ready (sinfo: $(sinfo -h -o '%P %a %D %t %N %c CPUs' | tr -s ' ' | paste -sd ';'))"
