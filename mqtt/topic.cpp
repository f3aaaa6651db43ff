#include "mqtt/topic.h"

#include <cstdint>

#include "mqtt/words.h"

namespace petrel::mqtt {

namespace {

using words::bytesEqual;
using words::flaggedBytes;
using words::lastBytes;

size_t levelCount(std::string_view s) {
  size_t n = 1;
  for (char c : s) n += c == '/';
  return n;
}

// No wildcard in the `n` bytes at `p`, and with kCount the levels counted
// into `levels`, eight bytes at a time.
template <bool kCount>
bool scanTopicName(const char* p, size_t n, size_t& levels) {
  auto word = [&levels](uint64_t v) {
    if (bytesEqual(v, '+') | bytesEqual(v, '#')) return false;
    if constexpr (kCount) levels += flaggedBytes(bytesEqual(v, '/'));
    return true;
  };
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    if (!word(words::load(p + i))) return false;
  // The rest, up to seven bytes, from the last eight without the ones
  // already seen.
  return i == n || word(lastBytes(p + n - 8, n - i));
}

}  // namespace

bool validTopicName(std::string_view topic, size_t max_levels) {
  if (topic.empty() || topic.size() > 65535) return false;
  // One pass (this runs for every PUBLISH): no wildcard anywhere, and the
  // levels counted on the way -- only where they could be too many: n bytes
  // hold at most n + 1 levels.
  const char* p = topic.data();
  const size_t n = topic.size();
  const bool count = max_levels != 0 && n + 1 > max_levels;
  size_t levels = 1;
  if (n >= 8) {
    if (!(count ? scanTopicName<true>(p, n, levels) : scanTopicName<false>(p, n, levels))) return false;
  } else {
    for (size_t i = 0; i < n; ++i) {
      const char c = p[i];
      // '#' 0x23, '+' 0x2B and '/' 0x2F: one test passes every other byte
      // but the rest of 0x23..0x2F.
      if (static_cast<unsigned char>(c - '#') > '/' - '#') continue;
      if (c == '+' || c == '#') return false;
      levels += c == '/';
    }
  }
  return !count || levels <= max_levels;
}

bool validTopicFilter(std::string_view f, size_t max_levels) {
  if (f.empty() || f.size() > 65535) return false;
  for (size_t i = 0; i < f.size(); ++i) {
    const char c = f[i];
    if (c != '+' && c != '#') continue;
    const bool starts_level = i == 0 || f[i - 1] == '/';
    const bool ends_level = i + 1 == f.size() || f[i + 1] == '/';
    if (!starts_level || !ends_level) return false;
    if (c == '#' && i + 1 != f.size()) return false;
  }
  return max_levels == 0 || levelCount(f) <= max_levels;
}

bool topicMatches(std::string_view filter, std::string_view topic) {
  if (!topic.empty() && topic[0] == '$' && !filter.empty() &&
      (filter[0] == '+' || filter[0] == '#'))
    return false;
  size_t fi = 0, ti = 0;
  while (true) {
    const size_t fe = filter.find('/', fi);
    const std::string_view flevel =
        filter.substr(fi, fe == std::string_view::npos ? std::string_view::npos : fe - fi);
    if (flevel == "#") return true;  // also matches the parent level [MQTT-4.7.1-2]
    if (ti > topic.size()) {
      return false;
    }
    const size_t te = topic.find('/', ti);
    const std::string_view tlevel =
        topic.substr(ti, te == std::string_view::npos ? std::string_view::npos : te - ti);
    if (flevel != "+" && flevel != tlevel) return false;
    const bool fend = fe == std::string_view::npos;
    const bool tend = te == std::string_view::npos;
    if (fend && tend) return true;
    if (tend) {
      // Topic exhausted: only a trailing "/#" can still match.
      return filter.substr(fe + 1) == "#";
    }
    if (fend) return false;
    fi = fe + 1;
    ti = te + 1;
  }
}

bool parseSharedFilter(std::string_view f, SharedFilter& out) {
  constexpr std::string_view kPrefix = "$share/";
  out = {};
  if (f.substr(0, kPrefix.size()) != kPrefix) return true;
  out.shared = true;
  std::string_view rest = f.substr(kPrefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) return false;
  out.group = rest.substr(0, slash);
  out.filter = rest.substr(slash + 1);
  if (out.group.find_first_of("+#") != std::string_view::npos) return false;
  return validTopicFilter(out.filter);
}

}  // namespace petrel::mqtt
