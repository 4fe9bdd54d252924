//! Identity of processes from /proc and cgroup v2: names, executables, cgroup paths, pods.

pub mod cgroup;
