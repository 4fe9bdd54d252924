#!/bin/sh
# /init of the kernel matrix's guest; xtask/src/kernels/guest.rs fills in the fields in capitals.
# Mounts what the agent reads, then for each run starts one profile window, runs the workloads
# inside it, then serves a few duty-cycled windows with `run` (the sampled programs detached and
# attached again in each), and prints everything the host checks between `=== meshmark-... ===`
# markers on the console; then powers off. Nothing here may wait forever: the host kills QEMU after a deadline
# anyway, but a clear marker beats a timeout.
export PATH=/bin

marker() { echo "=== meshmark-$* ==="; }
uptime_s() { read -r up _ < /proc/uptime; echo "$up"; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 none /sys/fs/cgroup || marker "note cgroup2 not mounted"
mount -t bpf none /sys/fs/bpf || marker "note bpffs not mounted"
mount -t tracefs none /sys/kernel/tracing 2>/dev/null
mount -t debugfs none /sys/kernel/debug 2>/dev/null
ip link set lo up || marker "note lo not up"
hostname meshmark-guest

marker "guest-up $(uname -r) at $(uptime_s)"

# One workload: its ground-truth line between markers, then its exit status.
run_workload() {
    name=$1
    shift
    out=$(/bin/mm-workload "$@")
    status=$?
    marker "truth $name"
    printf '%s\n' "$out"
    marker "truth-status $name $status"
}

# One profile window named $1, the agent given the rest of the arguments, around all the
# workloads; then its results.
profile_window() {
    marker "run $1"
    shift
    rm -f /tmp/profile.json
    : >/tmp/agent.err
    /bin/meshmark-agent profile --duration @DURATION@ --format json --output /tmp/profile.json \
        "$@" 2>/tmp/agent.err &
    agent=$!
    tenths=0
    until grep -q "profiling for" /tmp/agent.err; do
        if ! kill -0 "$agent" 2>/dev/null; then
            marker "note the agent exited before it started profiling"
            break
        fi
        if [ "$tenths" -ge @READY_TENTHS@ ]; then
            marker "note the agent did not start profiling within @READY_TENTHS@ tenths of a second"
            kill "$agent"
            break
        fi
        sleep 0.1
        tenths=$((tenths + 1))
    done
    marker "agent-ready at $(uptime_s)"

@WORKLOADS@
    marker "workloads-done at $(uptime_s)"

    wait "$agent"
    status=$?
    marker "agent-status $status at $(uptime_s)"
    marker "agent-stderr"
    cat /tmp/agent.err
    marker "agent-stderr-end"
    marker "profile"
    cat /tmp/profile.json 2>/dev/null
    echo
    marker "profile-end"
}

# `run` named $1 (the agent given the rest of the arguments) for @SERVE_WINDOWS@ windows of
# @SERVE_WINDOW@ at a @SERVE_DUTY@ duty cycle, beside a sleeper that makes syscalls all along; polling
# /metrics meanwhile moves the agent's own socket bytes. Then the last window's JSON.
serve_windows() {
    marker "serve $1"
    shift
    /bin/mm-workload sleep --count 1000000 --ms 2 >/dev/null &
    sleeper=$!
    : >/tmp/serve.err
    /bin/meshmark-agent run --listen 127.0.0.1:9477 --window @SERVE_WINDOW@ --duty-cycle @SERVE_DUTY@ \
        "$@" 2>/tmp/serve.err &
    agent=$!
    tenths=0
    windows=0
    while [ "${windows:-0}" -lt @SERVE_WINDOWS@ ]; do
        if ! kill -0 "$agent" 2>/dev/null; then
            marker "note the agent exited while serving"
            break
        fi
        if [ "$tenths" -ge @SERVE_LIMIT_TENTHS@ ]; then
            marker "note the agent did not score @SERVE_WINDOWS@ windows within @SERVE_LIMIT_TENTHS@ tenths of a second"
            break
        fi
        sleep 0.5
        tenths=$((tenths + 5))
        windows=$(wget -q -O - http://127.0.0.1:9477/metrics 2>/dev/null |
            awk '/^meshmark_windows_total/ { print $2 }')
    done
    marker "serve-windows ${windows:-0} at $(uptime_s)"
    marker "serve-node"
    wget -q -O - http://127.0.0.1:9477/api/v1/node 2>/dev/null
    echo
    marker "serve-node-end"
    kill "$agent" 2>/dev/null
    wait "$agent"
    marker "serve-agent-status $? sleeper $sleeper"
    kill "$sleeper" 2>/dev/null
    wait "$sleeper" 2>/dev/null
    marker "agent-stderr"
    tail -n 20 /tmp/serve.err
    marker "agent-stderr-end"
}

@RUNS@
marker "dmesg-tail"
dmesg | tail -n 30
marker "end"
poweroff -f
