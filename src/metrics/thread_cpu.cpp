#include "src/metrics/thread_cpu.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <utility>

namespace petrel {

namespace {

// The whole of a small /proc file ("" if it cannot be read).
std::string readSmall(const std::string& path) {
  std::string out;
  FILE* f = std::fopen(path.c_str(), "re");
  if (!f) return out;
  char buf[1024];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

// petrel-io-2 before petrel-io-10: a trailing number compares as a number.
struct ByName {
  static std::pair<std::string_view, uint64_t> split(std::string_view s) {
    size_t i = s.size();
    while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9') --i;
    uint64_t n = 0;
    for (size_t k = i; k < s.size() && k < i + 18; ++k) n = n * 10 + static_cast<uint64_t>(s[k] - '0');
    return {s.substr(0, i), n};
  }
  bool operator()(const std::string& a, const std::string& b) const {
    const auto x = split(a), y = split(b);
    return x != y ? x < y : a < b;
  }
};

}  // namespace

bool parseTaskStat(std::string_view stat, uint64_t& ticks) {
  // "tid (name) state ppid ..." : after the name, field 3 is the state;
  // utime and stime are fields 14 and 15.
  const size_t close = stat.rfind(')');
  if (close == std::string_view::npos || stat.find('(') == std::string_view::npos) return false;
  std::string_view rest = stat.substr(close + 1);
  uint64_t utime = 0, stime = 0;
  int field = 2;
  size_t i = 0;
  while (i < rest.size() && field < 15) {
    while (i < rest.size() && rest[i] == ' ') ++i;
    if (i == rest.size()) break;
    size_t end = rest.find(' ', i);
    if (end == std::string_view::npos) end = rest.size();
    ++field;
    if (field == 14 || field == 15) {
      uint64_t v = 0;
      for (size_t k = i; k < end; ++k) {
        if (rest[k] < '0' || rest[k] > '9') return false;
        v = v * 10 + static_cast<uint64_t>(rest[k] - '0');
      }
      (field == 14 ? utime : stime) = v;
    }
    i = end;
  }
  if (field < 15) return false;
  ticks = utime + stime;
  return true;
}

std::vector<ThreadCpu> threadCpu() {
  std::vector<ThreadCpu> out;
  const long hz = sysconf(_SC_CLK_TCK);
  if (hz <= 0) return out;
  const std::string task = "/proc/" + std::to_string(getpid()) + "/task";
  DIR* d = opendir(task.c_str());
  if (!d) return out;
  const std::string main_tid = std::to_string(getpid());
  double main_s = 0, other_s = 0;
  bool have_main = false, have_other = false;
  std::map<std::string, double, ByName> named;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string dir = task + "/" + e->d_name;
    uint64_t ticks = 0;
    if (!parseTaskStat(readSmall(dir + "/stat"), ticks)) continue;  // ended meanwhile
    const double s = static_cast<double>(ticks) / static_cast<double>(hz);
    if (main_tid == e->d_name) {
      main_s = s;
      have_main = true;
      continue;
    }
    std::string name = readSmall(dir + "/comm");
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    if (name.rfind("petrel-", 0) == 0) {
      named[name] += s;
    } else {
      other_s += s;
      have_other = true;
    }
  }
  closedir(d);
  if (have_main) out.push_back({"main", main_s});
  for (auto& [name, s] : named) out.push_back({name, s});
  if (have_other) out.push_back({"other", other_s});
  return out;
}

}  // namespace petrel
