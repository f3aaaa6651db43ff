#include "src/routing/message_lifetimes.h"

#include "mqtt/topic.h"

namespace petrel {

namespace {

template <typename Out>
void splitLevels(std::string_view s, Out& out) {
  size_t from = 0;
  while (true) {
    const size_t slash = s.find('/', from);
    if (slash == std::string_view::npos) {
      out.emplace_back(s.substr(from));
      return;
    }
    out.emplace_back(s.substr(from, slash - from));
    from = slash + 1;
  }
}

// §4.7: `+` one level, `#` the rest (and the parent level itself); a filter
// that starts with a wildcard does not match a `$` topic [MQTT-4.7.2-1].
bool levelsMatch(const std::vector<std::string>& filter, const std::vector<std::string_view>& topic) {
  for (size_t i = 0; i < filter.size(); ++i) {
    const std::string& f = filter[i];
    if (f == "#") return true;
    if (i >= topic.size()) return false;
    if (f != "+" && f != topic[i]) return false;
  }
  return filter.size() == topic.size();
}

}  // namespace

bool MessageLifetimes::add(std::string filter, uint32_t seconds) {
  mqtt::SharedFilter sf;
  if (!mqtt::validTopicFilter(filter) || !mqtt::parseSharedFilter(filter, sf) || sf.shared) return false;
  std::vector<std::string> levels;
  splitLevels(filter, levels);
  levels_.push_back(std::move(levels));
  rules_.push_back({std::move(filter), seconds});
  return true;
}

const MessageLifetimes::Rule* MessageLifetimes::match(std::string_view topic) const {
  if (rules_.empty() || topic.empty()) return nullptr;
  std::vector<std::string_view> levels;
  levels.reserve(8);
  splitLevels(topic, levels);
  const bool dollar = topic[0] == '$';
  for (size_t i = 0; i < rules_.size(); ++i) {
    const std::string& first = levels_[i].front();
    if (dollar && (first == "+" || first == "#")) continue;
    if (levelsMatch(levels_[i], levels)) return &rules_[i];
  }
  return nullptr;
}

std::optional<uint32_t> MessageLifetimes::resolve(std::string_view topic, std::optional<uint32_t> asked) const {
  std::optional<uint32_t> s = asked;
  if (!s) {
    const Rule* r = match(topic);
    if (r && r->seconds) s = r->seconds;
  }
  if (s && cap_ && *s > cap_) s = cap_;
  return s;
}

}  // namespace petrel
