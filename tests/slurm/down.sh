#!/usr/bin/env bash
# Stop the single-node Slurm test cluster started by tests/slurm/up.sh.
#
#   tests/slurm/down.sh [STATE_DIR]      (default: /tmp/byzstress-slurm)
#
# Stops, by the PIDs recorded in STATE_DIR/pids/, slurmd, slurmctld,
# slurmdbd, mariadbd and munged (munged only if up.sh started it), each with
# SIGTERM, a bounded wait and a SIGKILL fallback.  Running jobs are cancelled
# first.  Packages, configs and STATE_DIR contents are left in place (so a
# later up.sh restarts from the same accounting DB).  Exits 0 even if
# nothing is running.
#
# Environment: SLURM_DOWN_TIMEOUT  seconds to wait per daemon (default 20)
set -euo pipefail

STATE_DIR=${1:-/tmp/byzstress-slurm}
TIMEOUT=${SLURM_DOWN_TIMEOUT:-20}
PID_DIR=$STATE_DIR/pids

log() { printf '[slurm-down] %s\n' "$*" >&2; }

# alive PID: the process exists and is not a zombie (an exited daemon may
# linger as a zombie when PID 1 is slow to reap orphans, e.g. in containers).
alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

read_pid() { # read_pid NAME -> prints the PID if the process is alive
    local f=$PID_DIR/$1.pid pid
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    printf '%s\n' "$pid"
}

stop() { # stop NAME...: SIGTERM them all, wait (bounded), SIGKILL leftovers
    local name pid deadline
    local -A pids=()
    for name in "$@"; do
        if pid=$(read_pid "$name"); then
            log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids[$name]=$pid
        fi
    done
    deadline=$((SECONDS + TIMEOUT))
    for name in "${!pids[@]}"; do
        pid=${pids[$name]}
        while alive "$pid"; do
            if ((SECONDS >= deadline)); then
                log "$name (pid $pid) still alive after ${TIMEOUT}s; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                sleep 0.5
                break
            fi
            sleep 0.2
        done
    done
    for name in "$@"; do rm -f "$PID_DIR/$name.pid"; done
}

if [[ ! -d $PID_DIR ]]; then
    log "no $PID_DIR; nothing to stop"
    exit 0
fi

# Cancel any jobs still running so their slurmstepd/job processes go away
# with the cluster (slurmstepd is not a child of slurmd once started).
if read_pid slurmctld >/dev/null && read_pid slurmd >/dev/null &&
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        log "cancelling jobs: $(tr '\n' ' ' <<<"$jobs")"
        # shellcheck disable=SC2086  # word-splitting the job id list is intended
        timeout 10 scancel $jobs 2>/dev/null || true
        deadline=$((SECONDS + TIMEOUT))
        while [[ -n $(timeout 10 squeue -h -o %i 2>/dev/null || true) ]] && ((SECONDS < deadline)); do
            sleep 0.5
        done
    fi
fi

# slurmctld flushes job records to slurmdbd on shutdown, so slurmdbd goes
# after it, and the database after slurmdbd.
stop slurmd slurmctld
stop slurmdbd
stop mariadbd munged
log "stopped"
