// src/bridges/topic_map.h — a bridge's topic rules (config BridgeTopic) as
// the two mappings a message goes through: local topic -> remote topic for
// what goes out, remote topic -> local topic for what comes in. The first
// rule of the direction whose filter matches wins; the prefix of one side
// is replaced by the prefix of the other.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "src/config/config.h"

namespace petrel {

class TopicMap {
 public:
  explicit TopicMap(const std::vector<BridgeTopic>& rules) {
    for (const BridgeTopic& r : rules) rules_.push_back({&r, r.localFilter(), r.remoteFilter()});
  }

  // The remote topic of a local one (an `out` or `both` rule matches);
  // false when no rule sends it.
  bool toRemote(std::string_view local, std::string& remote) const;
  // The local topic of a remote one (an `in` or `both` rule matches).
  bool toLocal(std::string_view remote, std::string& local) const;

 private:
  struct Rule {
    const BridgeTopic* topic;  // in the configuration, which outlives this
    std::string local_filter;
    std::string remote_filter;
  };
  std::vector<Rule> rules_;
};

}  // namespace petrel
