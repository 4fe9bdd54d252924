#!/bin/sh
# /init of the kernel matrix's guest; xtask/src/kernels/guest.rs fills in the fields in capitals.
# Mounts what the agent reads, then for each run starts one profile window, runs the workloads
# inside it, and prints everything the host checks between `=== meshmark-... ===` markers on the
# console; then powers off. Nothing here may wait forever: the host kills QEMU after a deadline
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

@RUNS@
marker "dmesg-tail"
dmesg | tail -n 30
marker "end"
poweroff -f
