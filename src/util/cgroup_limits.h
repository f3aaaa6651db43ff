// src/util/cgroup_limits.h — what the process's cgroup lets it use: the CPU
// quota, which `workers: auto` sizes the event loops by, and the memory
// limit, which `limits.max_output_memory: auto` sizes the output budget by.
//
// CPUs: two things bound them. The affinity mask (taskset, a cpuset) says
// which CPUs the threads may run on; libuv's uv_available_parallelism()
// counts them. The cgroup's CPU quota (a container's --cpus, a Kubernetes
// CPU limit, systemd's CPUQuota=) says how much CPU time the process gets
// per period, on however many CPUs: a container limited to 2 CPUs on a
// 64-core host sees all 64 in its mask, and 64 busy loops there would use
// up the quota early in each period and all stop until the next (100 ms
// by default), a stall no client would forgive.
//
// Memory: a container's --memory, a Kubernetes memory limit or systemd's
// MemoryMax= is far below the host's RAM, which is all the process sees
// otherwise; past it the kernel kills the broker, every client at once.
//
// Each limit is read as the kernel applies it: the process's cgroup from
// /proc/self/cgroup, where its hierarchy is mounted from
// /proc/self/mountinfo, then the lowest limit from that cgroup up to the
// mount's root (a parent's limit binds its children). CPU: cgroup v2's
// `cpu.max` ("max 100000" or "150000 100000"), v1's `cpu.cfs_quota_us`
// (-1: none) over `cpu.cfs_period_us`. Memory: v2's `memory.max` ("max"
// or bytes), v1's `memory.limit_in_bytes` (a number near 2^63: none).
// A controller is read in one hierarchy only, v1's where it has one.
// Nothing found, or nothing readable, is no limit.
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

struct MemoryLimit {
  uint64_t bytes = 0;
  std::string where;  // the cgroup directory whose limit it is
};

// The memory limit of the cgroup named in `proc_self_cgroup`, read as
// cgroupCpuQuota reads the quota; none when there is no limit or it cannot
// be read.
std::optional<MemoryLimit> cgroupMemoryLimit(std::string_view proc_self_cgroup, std::string_view mountinfo);

// The same for this process.
std::optional<MemoryLimit> ownMemoryLimit();

// `limits.max_output_memory: auto`: a quarter of the memory the process may
// use (the machine's RAM, `ram`, or the cgroup's limit where lower), at
// most 1 GiB and at least 4 MiB. A quarter leaves the rest to what is not
// output: sessions, queue windows, messages, TLS, the store's pages.
uint64_t autoOutputMemory(uint64_t ram, const std::optional<MemoryLimit>& limit);

}  // namespace petrel
