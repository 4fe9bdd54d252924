//! Parsing of cgroup v2 paths into container ids and pod UIDs (pure).
