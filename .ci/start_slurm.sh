#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/test_slurm.py (issue 28: "a real SLURM in CI").
#
# Installs Debian's slurm-wlm and munge when missing, writes a munge key and a one-node slurm.conf
# (this host, its cores, its memory less a margin; no cgroups, no systemd: it runs in a container),
# starts munged, slurmctld and slurmd in the background, and waits (bounded) until `sinfo` shows
# the node idle. A second run finds the cluster up and leaves it alone.
#
# It always exits 0: when the cluster cannot start it says why, on stdout and in
# $SLURM_CI_DIR/unavailable, and tests/test_slurm.py skips with that reason.
#
# Environment: SLURM_CI_DIR (state, spool and logs; default /var/spool/bayescal-slurm),
# SLURM_CI_WAIT (seconds to wait for the node; default 60).
set -u

state="${SLURM_CI_DIR:-/var/spool/bayescal-slurm}"
wait_s="${SLURM_CI_WAIT:-60}"
conf_dir=/etc/slurm
conf="$conf_dir/slurm.conf"
node="$(hostname -s 2>/dev/null || hostname)"

say() { printf 'start_slurm: %s\n' "$*"; }

give_up() {
    say "SLURM cluster NOT started: $*"
    mkdir -p "$state" 2>/dev/null && printf '%s\n' "$*" >"$state/unavailable" 2>/dev/null
    exit 0
}

node_state() {  # the node's state as sinfo reports it ('' when slurmctld does not answer)
    timeout 10 sinfo -h -N -n "$node" -o '%T' 2>/dev/null | head -n 1
}

running() {  # a live (not zombie) process of that name
    # shellcheck disable=SC2009  # pgrep also lists zombies, which a container's init may leave
    ps -C "$1" -o stat= 2>/dev/null | grep -qv '^Z'
}

# ---------------------------------------------------------------- already up?
if command -v sinfo >/dev/null 2>&1 && [ -r "$conf" ] && running slurmctld && running slurmd; then
    st="$(node_state)"
    case "$st" in
        idle|mixed|allocated|completing)
            rm -f "$state/unavailable" 2>/dev/null
            say "a SLURM cluster is already running (node $node: $st); nothing to do"
            sinfo
            exit 0 ;;
    esac
fi

# ---------------------------------------------------------------- install
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    give_up "needs root (or password-less sudo) to install and start slurmctld/slurmd; running as $(id -un)"
fi

if [ -r /etc/debian_version ]; then
    say "Debian $(cat /etc/debian_version)"
fi
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
        || ! command -v munged >/dev/null 2>&1 || ! command -v sinfo >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || give_up "slurm-wlm/munge are not installed and there is no apt-get"
    say "installing slurm-wlm and munge (apt-get)"
    log="$(mktemp)"
    if ! { "${as_root[@]}" apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
                slurm-wlm munge; } >"$log" 2>&1; then
        tail -n 5 "$log"
        give_up "apt-get install slurm-wlm munge failed (last lines above)"
    fi
    rm -f "$log"
fi
version="$(slurmd -V 2>/dev/null | awk '{print $2}')"
say "slurm $version, munge $(munged -V 2>/dev/null | awk '{print $1}' | sed 's/munge-//')"

# ---------------------------------------------------------------- munge
"${as_root[@]}" mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "creating a munge key"
    if command -v mungekey >/dev/null 2>&1; then
        "${as_root[@]}" mungekey --create --keyfile=/etc/munge/munge.key --force >/dev/null 2>&1
    fi
    [ -s /etc/munge/munge.key ] || "${as_root[@]}" dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
if id munge >/dev/null 2>&1; then
    "${as_root[@]}" chown munge:munge /etc/munge /etc/munge/munge.key /var/lib/munge /var/log/munge /run/munge
fi
"${as_root[@]}" chmod 0700 /etc/munge /var/lib/munge /var/log/munge
"${as_root[@]}" chmod 0400 /etc/munge/munge.key
"${as_root[@]}" chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    if [ -s /run/munge/munged.pid ] && running munged; then  # a stale munged that does not answer
        "${as_root[@]}" kill "$(cat /run/munge/munged.pid)" 2>/dev/null; sleep 1
    fi
    say "starting munged"
    if id munge >/dev/null 2>&1 && command -v runuser >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
        runuser -u munge -- /usr/sbin/munged || give_up "munged did not start (see /var/log/munge/munged.log)"
    else
        "${as_root[@]}" /usr/sbin/munged --force || give_up "munged did not start (see /var/log/munge/munged.log)"
    fi
    for _ in $(seq 1 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 \
        || give_up "munged does not answer: $(tail -n 2 /var/log/munge/munged.log 2>/dev/null | tr '\n' ' ')"
else
    say "munged is running"
fi

# ---------------------------------------------------------------- slurm.conf
cpus="$(nproc)"
mem_total="$(free -m | awk '/^Mem:/ {print $2}')"
margin=$(( mem_total / 10 > 1024 ? mem_total / 10 : 1024 ))
real_mem=$(( mem_total - margin ))
[ "$real_mem" -ge 256 ] || real_mem=256
"${as_root[@]}" mkdir -p "$state/ctld" "$state/d" "$state/log" "$conf_dir"
new_conf="$(mktemp)"
cat >"$new_conf" <<EOF
# Written by bayescal's .ci/start_slurm.sh: a one-node cluster for tests (no cgroups, no systemd).
# No accounting (AccountingStorageType, JobAcctGatherType unset: none on every Slurm version).
ClusterName=bayescal-ci
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
KillWait=5
MinJobAge=60
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
# OverSubscribe: tests running side by side (pytest-xdist) may each hold two 1-core worker jobs
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
"${as_root[@]}" install -m 0644 "$new_conf" "$conf"
rm -f "$new_conf"
# Slurm >= 24.05 initialises a cgroup plugin in slurmd unless told not to; older ones reject the key.
major="${version%%.*}"; minor="${version#*.}"; minor="${minor%%.*}"
if [ -n "$major" ] && { [ "$major" -gt 24 ] || { [ "$major" -eq 24 ] && [ "$minor" -ge 5 ]; }; } 2>/dev/null; then
    printf 'CgroupPlugin=disabled\n' | "${as_root[@]}" tee "$conf_dir/cgroup.conf" >/dev/null
fi
say "wrote $conf (node $node, CPUs=$cpus, RealMemory=$real_mem MB; state and logs in $state)"

# ---------------------------------------------------------------- daemons
if running slurmctld && ! timeout 10 scontrol ping 2>/dev/null | grep -qw UP \
        && [ -s "$state/slurmctld.pid" ]; then  # ours, and it does not answer
    "${as_root[@]}" kill "$(cat "$state/slurmctld.pid")" 2>/dev/null; sleep 2
fi
if running slurmctld; then
    "${as_root[@]}" scontrol reconfigure >/dev/null 2>&1
    say "slurmctld is running (reconfigured)"
else
    say "starting slurmctld"
    # -c: a fresh start drops jobs left in the state of a cluster that is gone
    "${as_root[@]}" slurmctld -c \
        || give_up "slurmctld did not start: $(tail -n 3 "$state/log/slurmctld.log" 2>/dev/null | tr '\n' ' ')"
fi
if ! running slurmd; then
    say "starting slurmd"
    "${as_root[@]}" slurmd \
        || give_up "slurmd did not start: $(tail -n 3 "$state/log/slurmd.log" 2>/dev/null | tr '\n' ' ')"
else
    say "slurmd is running"
fi

# ---------------------------------------------------------------- wait for the node
deadline=$(( SECONDS + wait_s ))
resumed=0
st=""
while [ "$SECONDS" -lt "$deadline" ]; do
    st="$(node_state)"
    case "$st" in
        idle|mixed|allocated|completing) break ;;
        down*|drain*|fail*)
            if [ "$resumed" -eq 0 ]; then
                "${as_root[@]}" scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1
                resumed=1
            fi ;;
    esac
    running slurmctld || give_up "slurmctld exited: $(tail -n 3 "$state/log/slurmctld.log" 2>/dev/null | tr '\n' ' ')"
    running slurmd || give_up "slurmd exited: $(tail -n 3 "$state/log/slurmd.log" 2>/dev/null | tr '\n' ' ')"
    sleep 1
done
case "$st" in
    idle|mixed|allocated|completing) ;;
    *)
        reason="$(timeout 10 scontrol show node "$node" 2>/dev/null | sed -n 's/^ *Reason=//p')"
        give_up "node $node is '${st:-unknown}' after ${wait_s} s${reason:+ (reason: $reason)}; logs in $state/log" ;;
esac
rm -f "$state/unavailable"
say "SLURM cluster up: node $node is $st"
sinfo
exit 0
