#!/usr/bin/env bash
# Bring up a real single-node Slurm cluster (slurmctld + slurmd + slurmdbd
# backed by a private MariaDB) on a Debian/Ubuntu machine, as root, without
# systemd.  Used by CI and by the pytest Slurm integration test.
#
#   tests/slurm/up.sh [STATE_DIR]      (default: /tmp/byzstress-slurm)
#
# Everything mutable (MariaDB datadir, slurmctld state, slurmd spool, logs,
# PID files) lives under STATE_DIR; the configs are written to /etc/slurm/
# (where Debian's daemons and every client, e.g. those launched by
# snakemake-executor-plugin-slurm, look without extra environment).
# Daemon PIDs are recorded in STATE_DIR/pids/; tests/slurm/down.sh stops them.
#
# Re-runnable: if the cluster is already up and healthy it exits 0 at once;
# otherwise it stops whatever is left (via down.sh) and starts cleanly.
# Only one such cluster per machine (fixed ports 6817-6819, /etc/slurm).
#
# Environment overrides:
#   SLURM_UP_TIMEOUT  seconds to wait for each daemon (default 60)
#   SLURM_DB_PORT     TCP port of the private MariaDB (default 3307)
#   SLURM_CLUSTER     cluster name (default byzstress)
#   SLURM_DEF_MEM     DefMemPerCPU in MB (default 256)
#   SLURM_UP_KEEP_ON_FAILURE  1 = on failure leave started daemons running
#                     (default: print log tails, run down.sh, exit 1)
#   SLURM_ENFORCE_MEM 1 = kill jobs whose summed RSS exceeds their --mem
#                     (JobAcctGatherParams=OverMemoryKill, polled every 2 s;
#                     the job then ends FAILED, ExitCode 0:9).  Default 0:
#                     --mem is honoured for scheduling only.  Note that with
#                     snakemake-executor-plugin-slurm each job also runs a
#                     snakemake process whose RSS counts towards the limit.
set -euo pipefail

STATE_DIR=${1:-/tmp/byzstress-slurm}
TIMEOUT=${SLURM_UP_TIMEOUT:-60}
DB_PORT=${SLURM_DB_PORT:-3307}
CLUSTER=${SLURM_CLUSTER:-byzstress}
DEF_MEM=${SLURM_DEF_MEM:-256}
ENFORCE_MEM=${SLURM_ENFORCE_MEM:-0}
DB_USER=slurm
DB_PASS=byzstress-slurmdbd
DB_NAME=slurm_acct_db
CONF_DIR=/etc/slurm
SLURM_USER=root

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PID_DIR=$STATE_DIR/pids
LOG_DIR=$STATE_DIR/log
DB_DIR=$STATE_DIR/mysql
DB_SOCK=$STATE_DIR/mysqld.sock
START=$SECONDS
STARTING=0

log() { printf '[slurm-up %3ds] %s\n' "$((SECONDS - START))" "$*" >&2; }

die() {
    log "ERROR: $1"
    shift
    local f
    for f in "$@"; do
        if [[ -f $f ]]; then
            printf -- '----- tail of %s -----\n' "$f" >&2
            tail -n 40 "$f" >&2 || true
        fi
    done
    if ((STARTING)) && [[ ${SLURM_UP_KEEP_ON_FAILURE:-0} != 1 ]]; then
        log "stopping what was started (set SLURM_UP_KEEP_ON_FAILURE=1 to keep it for debugging)"
        "$HERE/down.sh" "$STATE_DIR" || true
    fi
    exit 1
}

# wait_for DESCRIPTION LOGFILE DAEMON CMD...: poll CMD (quietly) until it
# succeeds or TIMEOUT seconds pass; on timeout, or as soon as DAEMON (a name
# under STATE_DIR/pids/, or - for none) has exited, print LOGFILE's tail and
# exit 1.
wait_for() {
    local what=$1 logf=$2 daemon=$3
    shift 3
    local deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if [[ $daemon != - ]] && ! pid_alive "$daemon"; then
            die "$daemon exited while waiting for $what" "$logf"
        fi
        if ((SECONDS >= deadline)); then
            die "timed out after ${TIMEOUT}s waiting for $what" "$logf"
        fi
        sleep 0.5
    done
    log "$what: ok"
}

# alive PID: the process exists and is not a zombie (an exited daemon may
# linger as a zombie when PID 1 is slow to reap orphans, e.g. in containers).
alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

pid_alive() { # pid_alive NAME -> true if STATE_DIR/pids/NAME.pid is a live process
    local f=$PID_DIR/$1.pid pid
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid"
}

# Run a daemon detached from our stdio (so callers capturing our output,
# e.g. subprocess.run(capture_output=True), do not hang on inherited pipes)
# and from our session/process group.
spawn() { # spawn LOGFILE CMD...
    local logf=$1
    shift
    setsid "$@" </dev/null >>"$logf" 2>&1 &
}

((EUID == 0)) || die "must run as root"

# ---------------------------------------------------------------- packages --
PKGS=(slurmctld slurmd slurm-client munge slurmdbd slurm-wlm-mysql-plugin mariadb-server)

install_packages() {
    local missing=() p
    for p in "${PKGS[@]}"; do
        if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) != "install ok installed" ]]; then
            missing+=("$p")
        fi
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep maintainer scripts from starting services (we start our own,
    # with our own config); restore the previous state afterwards.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    local need_update=0
    for p in "${missing[@]}"; do
        if ! apt-cache show "$p" >/dev/null 2>&1; then need_update=1; fi
    done
    local rc=0
    ((need_update)) && { apt-get update -q || rc=$?; }
    if ((rc == 0)); then
        apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
        if ((rc != 0 && need_update == 0)); then
            log "install failed; retrying after apt-get update"
            rc=0
            apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
        fi
    fi
    ((own_policy)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install failed (rc=$rc)"
}

install_packages

# ---------------------------------------------------- already up? ----------
cluster_healthy() {
    local d
    for d in mariadbd slurmdbd slurmctld slurmd; do pid_alive "$d" || return 1; done
    if [[ -f $PID_DIR/munged.pid ]]; then pid_alive munged || return 1; fi
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 || return 1
    [[ -f $CONF_DIR/slurm.conf ]] || return 1
    grep -qx "ClusterName=$CLUSTER" "$CONF_DIR/slurm.conf" || return 1
    grep -qx "StateSaveLocation=$STATE_DIR/slurmctld" "$CONF_DIR/slurm.conf" || return 1
    node_idle
}

node_idle() {
    local st
    st=$(timeout 10 sinfo -h -n localhost -o '%T' 2>/dev/null) || return 1
    [[ $st =~ ^(idle|mixed|allocated|completing) ]]
}

if cluster_healthy; then
    log "cluster already up (state dir $STATE_DIR); nothing to do"
    exit 0
fi
if [[ -d $PID_DIR ]]; then
    log "cluster not (fully) up; stopping any leftovers, then starting"
    "$HERE/down.sh" "$STATE_DIR"
fi

mkdir -p "$PID_DIR" "$LOG_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd" "$CONF_DIR"
STARTING=1
rm -f "$PID_DIR"/*.pid

# -------------------------------------------------------------------- munge --
MUNGE_KEY=/etc/munge/munge.key
munge_works() { munge -n </dev/null | unmunge >/dev/null; }

if munge_works 2>/dev/null; then
    log "munged already running (not started by us); reusing it"
else
    mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
    if [[ ! -s $MUNGE_KEY ]]; then
        log "creating munge key"
        if command -v mungekey >/dev/null; then
            mungekey --create --force --keyfile="$MUNGE_KEY"
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    if id munge >/dev/null 2>&1; then
        chown munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge "$MUNGE_KEY"
        chmod 700 /etc/munge /var/lib/munge /var/log/munge
        chmod 755 /run/munge
        chmod 400 "$MUNGE_KEY"
        # munged daemonises itself and writes its own PID file.
        spawn "$LOG_DIR/munged.out" runuser -u munge -- munged --force \
            --pid-file=/run/munge/munged.pid --log-file=/var/log/munge/munged.log
    else
        spawn "$LOG_DIR/munged.out" munged --force \
            --pid-file=/run/munge/munged.pid --log-file=/var/log/munge/munged.log
    fi
    wait_for "munged" /var/log/munge/munged.log - munge_works
    cp /run/munge/munged.pid "$PID_DIR/munged.pid"
fi

# ------------------------------------------------------------------ MariaDB --
mysql_root() { mariadb --no-defaults --protocol=socket --socket="$DB_SOCK" -uroot "$@"; }

if [[ ! -d $DB_DIR/mysql ]]; then
    log "initialising MariaDB datadir $DB_DIR"
    rm -rf "$DB_DIR"
    mkdir -p "$DB_DIR"
    install_db=$(command -v mariadb-install-db || command -v mysql_install_db)
    "$install_db" --no-defaults --user=root --datadir="$DB_DIR" \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$LOG_DIR/mariadb-install-db.log" 2>&1 ||
        die "mariadb-install-db failed" "$LOG_DIR/mariadb-install-db.log"
fi
mariadbd_bin=$(command -v mariadbd || echo /usr/sbin/mariadbd)
[[ -x $mariadbd_bin ]] || mariadbd_bin=/usr/sbin/mysqld
spawn "$LOG_DIR/mariadbd.out" "$mariadbd_bin" --no-defaults --user=root \
    --datadir="$DB_DIR" --socket="$DB_SOCK" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --pid-file="$PID_DIR/mariadbd.pid" \
    --log-error="$LOG_DIR/mariadbd.log" --skip-name-resolve \
    --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
    --innodb-log-file-size=64M
wait_for "mariadb pid file" "$LOG_DIR/mariadbd.log" - test -s "$PID_DIR/mariadbd.pid"
wait_for "mariadb" "$LOG_DIR/mariadbd.log" mariadbd mysql_root -e 'SELECT 1'

mysql_root --batch <<SQL
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
SQL

# ------------------------------------------------------------------ configs --
# Hardware as slurmd sees it, e.g.
#   NodeName=h CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
hw=$(slurmd -C | head -n 1)
hwval() { sed -n "s/.*\<$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
CPUS=$(hwval CPUs)
BOARDS=$(hwval Boards)
SOCKETS=$(hwval SocketsPerBoard)
CORES=$(hwval CoresPerSocket)
THREADS=$(hwval ThreadsPerCore)
MEM=$(hwval RealMemory)
[[ -n $CPUS && -n $MEM ]] || die "could not parse 'slurmd -C' output: $hw"
# Leave a little headroom so slurmd never reports less than configured.
MEM=$((MEM > 1024 ? MEM - 256 : MEM))
# Allocate per logical CPU: with ThreadsPerCore>1 CR_Core_Memory would hand
# a whole core (several CPUs) to a `-c 1` job.
if [[ ${THREADS:-1} == 1 ]]; then SELECT_PARAMS=CR_Core_Memory; else SELECT_PARAMS=CR_CPU_Memory; fi
GATHER_PARAMS=
if [[ $ENFORCE_MEM == 1 ]]; then GATHER_PARAMS=JobAcctGatherParams=OverMemoryKill; fi

cat >"$CONF_DIR/slurm.conf" <<EOF
# Generated by tests/slurm/up.sh -- single-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=$SLURM_USER
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
ReturnToService=2
MailProg=/bin/true
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$PID_DIR/slurmctld.pid
SlurmdPidFile=$PID_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldTimeout=60
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=300
Waittime=0
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=$SELECT_PARAMS
DefMemPerCPU=$DEF_MEM
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=2
$GATHER_PARAMS
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS Boards=${BOARDS:-1} SocketsPerBoard=${SOCKETS:-1} CoresPerSocket=${CORES:-$CPUS} ThreadsPerCore=${THREADS:-1} RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
chmod 644 "$CONF_DIR/slurm.conf"

cat >"$CONF_DIR/slurmdbd.conf" <<EOF
# Generated by tests/slurm/up.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=$SLURM_USER
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$PID_DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
chown "$SLURM_USER": "$CONF_DIR/slurmdbd.conf"
chmod 600 "$CONF_DIR/slurmdbd.conf"

# ----------------------------------------------------------------- slurmdbd --
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

spawn "$LOG_DIR/slurmdbd.out" slurmdbd
wait_for "slurmdbd pid file" "$LOG_DIR/slurmdbd.log" - test -s "$PID_DIR/slurmdbd.pid"
wait_for "slurmdbd port 6819" "$LOG_DIR/slurmdbd.log" slurmdbd port_open 6819

# Register cluster (and an account/user for root) in the accounting DB.
sacct_has_cluster() { sacctmgr -n -P show cluster format=Cluster | grep -qx "$CLUSTER"; }
wait_for "sacctmgr answering" "$LOG_DIR/slurmdbd.log" slurmdbd timeout 10 sacctmgr -n show cluster
if ! sacct_has_cluster; then
    timeout 30 sacctmgr -i add cluster "$CLUSTER" >/dev/null ||
        die "sacctmgr add cluster failed" "$LOG_DIR/slurmdbd.log"
fi
if [[ -z $(timeout 10 sacctmgr -n -P show account byzstress format=Account) ]]; then
    timeout 30 sacctmgr -i add account byzstress Cluster="$CLUSTER" \
        Description=byzstress Organization=byzstress >/dev/null ||
        die "sacctmgr add account failed" "$LOG_DIR/slurmdbd.log"
fi
if [[ -z $(timeout 10 sacctmgr -n -P show user root format=User) ]] ||
    [[ -z $(timeout 10 sacctmgr -n -P show assoc cluster="$CLUSTER" user=root account=byzstress format=User) ]]; then
    timeout 30 sacctmgr -i add user root Account=byzstress Cluster="$CLUSTER" >/dev/null || true
fi

# ---------------------------------------------------------------- slurmctld --
spawn "$LOG_DIR/slurmctld.out" slurmctld
wait_for "slurmctld pid file" "$LOG_DIR/slurmctld.log" - test -s "$PID_DIR/slurmctld.pid"
wait_for "slurmctld answering" "$LOG_DIR/slurmctld.log" slurmctld timeout 10 scontrol ping

# ------------------------------------------------------------------- slurmd --
spawn "$LOG_DIR/slurmd.out" slurmd -N localhost
wait_for "slurmd pid file" "$LOG_DIR/slurmd.log" - test -s "$PID_DIR/slurmd.pid"
# A node left DOWN/DRAIN by an earlier unclean stop: bring it back.
node_fix() {
    local st
    st=$(timeout 10 sinfo -h -n localhost -o '%T' 2>/dev/null) || return 1
    if [[ $st =~ ^(down|drain) ]]; then
        timeout 10 scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
        return 1
    fi
    node_idle
}
wait_for "node localhost idle in sinfo" "$LOG_DIR/slurmd.log" slurmd node_fix
wait_for "cluster $CLUSTER in sacctmgr" "$LOG_DIR/slurmctld.log" slurmctld sacct_has_cluster

for d in munged mariadbd slurmdbd slurmctld slurmd; do
    if [[ -f $PID_DIR/$d.pid ]]; then log "$d pid $(<"$PID_DIR/$d.pid")"; fi
done
log "Slurm cluster '$CLUSTER' up: partition debug, node localhost (CPUs=$CPUS RealMemory=$MEM, $SELECT_PARAMS)"
