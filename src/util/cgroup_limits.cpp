// src/util/cgroup_limits.cpp — see cgroup_limits.h.
#include "src/util/cgroup_limits.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <vector>

#include "src/util/text.h"

namespace petrel {
namespace {

// mountinfo writes a space, tab, newline and backslash in a path as \040,
// \011, \012 and \134.
std::string unescapeMountPath(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' &&
        s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

// A whole number, spaces and a newline around it allowed.
bool parseInt(std::string_view s, int64_t& v) {
  s = trim(s);
  if (s.empty() || s.size() > 20) return false;
  const std::string t(s);
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(t.c_str(), &end, 10);
  if (errno != 0 || end != t.c_str() + t.size()) return false;
  v = x;
  return true;
}

struct Mount {
  std::string root;   // the hierarchy's directory mounted there
  std::string point;  // where
};

// Where a controller's limits for this process are: the hierarchy's mount
// and the process's cgroup in it.
struct Hierarchy {
  Mount mount;
  std::string path;  // the cgroup, as /proc/self/cgroup names it
  bool v2 = false;
};

// The hierarchy that holds `controller` ("cpu", "memory") for the process
// of `proc_self_cgroup`, mounted as `mountinfo` says: v1's where it has
// one (a controller is in one hierarchy only), else v2's.
std::optional<Hierarchy> hierarchyOf(std::string_view controller, std::string_view proc_self_cgroup,
                                     std::string_view mountinfo) {
  // "<id>:<controllers>:<path>": v1 names its controllers ("cpu",
  // "cpu,cpuacct"); v2's line is "0::<path>".
  std::optional<std::string> v1_path, v2_path;
  for (std::string_view line : split(proc_self_cgroup, '\n')) {
    const size_t a = line.find(':');
    const size_t b = a == std::string_view::npos ? a : line.find(':', a + 1);
    if (b == std::string_view::npos) continue;
    const std::string_view controllers = line.substr(a + 1, b - a - 1);
    const std::string path(line.substr(b + 1));
    if (controllers.empty()) {
      if (line.substr(0, a) == "0") v2_path = path;
      continue;
    }
    for (std::string_view c : split(controllers, ','))
      if (c == controller) v1_path = path;
  }
  // "<id> <parent> <major:minor> <root> <mount point> <options> [optional
  // fields] - <type> <source> <super options>".
  std::optional<Mount> v1_mount, v2_mount;
  for (std::string_view line : split(mountinfo, '\n')) {
    const auto f = split(line, ' ');
    size_t dash = 0;
    for (size_t i = 6; i < f.size(); ++i)
      if (f[i] == "-") {
        dash = i;
        break;
      }
    if (dash == 0 || dash + 3 >= f.size()) continue;  // type, source and super options follow
    const std::string_view type = f[dash + 1];
    // Of several, the last: a later mount at the same place hides the
    // earlier ones.
    Mount m{unescapeMountPath(f[3]), unescapeMountPath(f[4])};
    if (type == "cgroup" && v1_path) {
      for (std::string_view o : split(f[dash + 3], ','))
        if (o == controller) v1_mount = m;
    } else if (type == "cgroup2" && v2_path) {
      v2_mount = m;
    }
  }
  if (v1_path) {
    if (!v1_mount) return std::nullopt;
    return Hierarchy{*v1_mount, *v1_path, false};
  }
  if (v2_path && v2_mount) return Hierarchy{*v2_mount, *v2_path, true};
  return std::nullopt;
}

// The directories from the process's cgroup up to the mount's root, the
// cgroup's own first: each one's limit binds the process.
std::vector<std::string> upward(const Hierarchy& h) {
  // Where the cgroup lies under the mount: the mount shows the hierarchy
  // from its root down. A path outside it (the process's cgroup is the
  // mount's root, as in a container) is read at the mount point.
  const Mount& m = h.mount;
  std::string rel;
  if (m.root == "/") rel = h.path;
  else if (h.path.size() > m.root.size() && h.path.compare(0, m.root.size(), m.root) == 0 &&
           h.path[m.root.size()] == '/')
    rel = h.path.substr(m.root.size());
  if (rel == "/") rel.clear();
  std::vector<std::string> dirs;
  std::string dir = m.point + rel;
  while (true) {
    dirs.push_back(dir);
    if (dir.size() <= m.point.size()) break;
    const size_t slash = dir.rfind('/');
    if (slash == std::string::npos || slash < m.point.size()) break;
    dir.resize(slash);
  }
  return dirs;
}

// The CPU quota set in directory `dir` itself, if any.
std::optional<CpuQuota> quotaIn(const std::string& dir, bool v2) {
  CpuQuota q;
  q.where = dir;
  if (v2) {
    // "max 100000" (no limit) or "<quota> <period>".
    const std::optional<std::string> text = readFile(dir + "/cpu.max");
    if (!text) return std::nullopt;
    std::string_view line(*text);
    line = line.substr(0, line.find('\n'));
    const auto parts = split(line, ' ');
    if (parts.size() != 2 || parts[0] == "max") return std::nullopt;
    if (!parseInt(parts[0], q.quota_us) || !parseInt(parts[1], q.period_us)) return std::nullopt;
  } else {
    const std::optional<std::string> quota = readFile(dir + "/cpu.cfs_quota_us");
    const std::optional<std::string> period = readFile(dir + "/cpu.cfs_period_us");
    if (!quota || !period || !parseInt(*quota, q.quota_us) || !parseInt(*period, q.period_us))
      return std::nullopt;  // -1: none
  }
  if (q.quota_us <= 0 || q.period_us <= 0) return std::nullopt;
  return q;
}

// v1 writes "no limit" as the largest multiple of the page size below
// 2^63; nothing a machine has comes near 2^62.
constexpr int64_t kNoMemoryLimit = int64_t(1) << 62;

// The memory limit set in directory `dir` itself, if any.
std::optional<MemoryLimit> memoryIn(const std::string& dir, bool v2) {
  const std::optional<std::string> text = readFile(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"));
  int64_t bytes = 0;
  if (!text || !parseInt(*text, bytes) || bytes <= 0 || bytes >= kNoMemoryLimit) return std::nullopt;  // "max"
  return MemoryLimit{static_cast<uint64_t>(bytes), dir};
}

// The lowest of the limits that `in` (quotaIn, memoryIn) finds from the
// process's cgroup up to the root of the hierarchy holding `controller`,
// by `lower`; none when no directory on the way has one.
template <class Limit, class Lower>
std::optional<Limit> lowestOnTheWayUp(std::string_view controller, std::string_view proc_self_cgroup,
                                      std::string_view mountinfo,
                                      std::optional<Limit> (*in)(const std::string&, bool), Lower lower) {
  const std::optional<Hierarchy> h = hierarchyOf(controller, proc_self_cgroup, mountinfo);
  if (!h) return std::nullopt;
  std::optional<Limit> best;
  for (const std::string& dir : upward(*h)) {
    std::optional<Limit> l = in(dir, h->v2);
    if (l && (!best || lower(*l, *best))) best = std::move(l);
  }
  return best;
}

// `read` (cgroupCpuQuota, cgroupMemoryLimit) of this process's
// /proc/self/cgroup and /proc/self/mountinfo; none when they cannot be read.
template <class Limit>
std::optional<Limit> ofThisProcess(std::optional<Limit> (*read)(std::string_view, std::string_view)) {
  const std::optional<std::string> cgroup = readFile("/proc/self/cgroup");
  const std::optional<std::string> mountinfo = readFile("/proc/self/mountinfo");
  if (!cgroup || !mountinfo) return std::nullopt;
  return read(*cgroup, *mountinfo);
}

}  // namespace

unsigned CpuQuota::wholeCpus() const {
  const int64_t n = (quota_us + period_us - 1) / period_us;
  return n < 1 ? 1u : n > 65535 ? 65535u : static_cast<unsigned>(n);
}

std::optional<CpuQuota> cgroupCpuQuota(std::string_view proc_self_cgroup, std::string_view mountinfo) {
  // Periods may differ from level to level: compared as quota over period.
  return lowestOnTheWayUp("cpu", proc_self_cgroup, mountinfo, quotaIn, [](const CpuQuota& a, const CpuQuota& b) {
    return static_cast<__int128>(a.quota_us) * b.period_us < static_cast<__int128>(b.quota_us) * a.period_us;
  });
}

std::optional<CpuQuota> ownCpuQuota() { return ofThisProcess(cgroupCpuQuota); }

unsigned autoLoops(unsigned affinity, const std::optional<CpuQuota>& quota) {
  unsigned n = affinity < 1 ? 1 : affinity;
  if (quota && quota->wholeCpus() < n) n = quota->wholeCpus();
  return n;
}

std::optional<MemoryLimit> cgroupMemoryLimit(std::string_view proc_self_cgroup, std::string_view mountinfo) {
  return lowestOnTheWayUp("memory", proc_self_cgroup, mountinfo, memoryIn,
                          [](const MemoryLimit& a, const MemoryLimit& b) { return a.bytes < b.bytes; });
}

std::optional<MemoryLimit> ownMemoryLimit() { return ofThisProcess(cgroupMemoryLimit); }

uint64_t autoOutputMemory(uint64_t ram, const std::optional<MemoryLimit>& limit) {
  uint64_t usable = ram;
  if (limit && (usable == 0 || limit->bytes < usable)) usable = limit->bytes;
  constexpr uint64_t kMost = uint64_t(1) << 30, kLeast = uint64_t(4) << 20;
  if (usable == 0) return kMost;  // nothing known
  return std::clamp(usable / 4, kLeast, kMost);
}

}  // namespace petrel
