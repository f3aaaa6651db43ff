// src/util/cpu_limit.cpp — see cpu_limit.h.
#include "src/util/cpu_limit.h"

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

// The limit set in directory `dir` itself, if any.
std::optional<CpuQuota> limitIn(const std::string& dir, bool v2) {
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

// The lowest limit from the cgroup `path` up to the root of `m`.
std::optional<CpuQuota> lowestLimit(const Mount& m, const std::string& path, bool v2) {
  // Where `path` lies under the mount: the mount shows the hierarchy from
  // m.root down. A path outside it (the process's cgroup is the mount's
  // root, as in a container) is read at the mount point.
  std::string rel;
  if (m.root == "/") rel = path;
  else if (path.size() > m.root.size() && path.compare(0, m.root.size(), m.root) == 0 && path[m.root.size()] == '/')
    rel = path.substr(m.root.size());
  if (rel == "/") rel.clear();
  std::string dir = m.point + rel;
  std::optional<CpuQuota> best;
  while (true) {
    if (auto q = limitIn(dir, v2)) {
      const __int128 a = static_cast<__int128>(q->quota_us) * (best ? best->period_us : 1);
      const __int128 b = static_cast<__int128>(best ? best->quota_us : 0) * q->period_us;
      if (!best || a < b) best = std::move(q);
    }
    if (dir.size() <= m.point.size()) break;
    const size_t slash = dir.rfind('/');
    if (slash == std::string::npos || slash < m.point.size()) break;
    dir.resize(slash);
  }
  return best;
}

}  // namespace

unsigned CpuQuota::wholeCpus() const {
  const int64_t n = (quota_us + period_us - 1) / period_us;
  return n < 1 ? 1u : n > 65535 ? 65535u : static_cast<unsigned>(n);
}

std::optional<CpuQuota> cgroupCpuQuota(std::string_view proc_self_cgroup, std::string_view mountinfo) {
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
      if (c == "cpu") v1_path = path;
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
        if (o == "cpu") v1_mount = m;
    } else if (type == "cgroup2" && v2_path) {
      v2_mount = m;
    }
  }
  // The cpu controller is in one hierarchy only: v1's where it has one.
  if (v1_path) return v1_mount ? lowestLimit(*v1_mount, *v1_path, false) : std::nullopt;
  if (v2_path && v2_mount) return lowestLimit(*v2_mount, *v2_path, true);
  return std::nullopt;
}

std::optional<CpuQuota> ownCpuQuota() {
  const std::optional<std::string> cgroup = readFile("/proc/self/cgroup");
  const std::optional<std::string> mountinfo = readFile("/proc/self/mountinfo");
  if (!cgroup || !mountinfo) return std::nullopt;
  return cgroupCpuQuota(*cgroup, *mountinfo);
}

unsigned autoLoops(unsigned affinity, const std::optional<CpuQuota>& quota) {
  unsigned n = affinity < 1 ? 1 : affinity;
  if (quota && quota->wholeCpus() < n) n = quota->wholeCpus();
  return n;
}

}  // namespace petrel
