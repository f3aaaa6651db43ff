// src/util/cpu_limit.h — how many CPUs this process may keep busy: what
// `workers: auto` sizes the event loops by.
//
// Two things bound it. The affinity mask (taskset, a cpuset) says which
// CPUs the threads may run on; libuv's uv_available_parallelism() counts
// them. The cgroup's CPU quota (a container's --cpus, a Kubernetes CPU
// limit, systemd's CPUQuota=) says how much CPU time the process gets per
// period, on however many CPUs: a container limited to 2 CPUs on a 64-core
// host sees all 64 in its mask, and 64 busy loops there would use up the
// quota early in each period and all stop until the next (100 ms by
// default), a stall no client would forgive.
//
// The quota is read as the kernel applies it: the process's cgroup from
// /proc/self/cgroup, where its hierarchy is mounted from
// /proc/self/mountinfo, then the lowest limit from that cgroup up to the
// mount's root (a parent's limit binds its children): cgroup v2's
// `cpu.max` ("max 100000" or "150000 100000"), v1's `cpu.cfs_quota_us`
// (-1: none) over `cpu.cfs_period_us`. Nothing found, or nothing
// readable, is no limit.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace petrel {

struct CpuQuota {
  int64_t quota_us = 0;   // CPU time per period, over all CPUs
  int64_t period_us = 0;
  std::string where;      // the cgroup directory whose limit it is
  double cpus() const { return static_cast<double>(quota_us) / static_cast<double>(period_us); }
  // The quota in whole CPUs, rounded up (1.5 CPUs: 2).
  unsigned wholeCpus() const;
};

// The CPU quota of the cgroup named in `proc_self_cgroup` (the text of
// /proc/self/cgroup), its hierarchy mounted as `mountinfo` (the text of
// /proc/self/mountinfo) says; none when there is no limit or it cannot be
// read. The files are read where the mount points say, so a test can lay
// out a hierarchy of its own under any directory.
std::optional<CpuQuota> cgroupCpuQuota(std::string_view proc_self_cgroup, std::string_view mountinfo);

// The same for this process.
std::optional<CpuQuota> ownCpuQuota();

// Event loops for `workers: auto`: one per CPU of the affinity mask
// (`affinity`), and no more than the quota rounded up; at least one.
unsigned autoLoops(unsigned affinity, const std::optional<CpuQuota>& quota);

}  // namespace petrel
