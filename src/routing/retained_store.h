// src/routing/retained_store.h — the last retained message of each topic (§3.3.1.3).
// Lookups by filter scan the topics that share the filter's literal prefix.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "src/routing/message.h"

namespace petrel {

class RetainedStore {
 public:
  // Stores `msg` for its topic; an empty payload clears it [MQTT-3.3.1-6].
  void set(const MessagePtr& msg);
  // Removes the retained message of `topic`, if any.
  void erase(std::string_view topic);
  // Calls f(const MessagePtr&) for each retained message matching `filter`.
  template <typename F>
  void forEachMatch(std::string_view filter, F&& f) const;
  // The retained message of `topic`, or null.
  const MessagePtr* find(std::string_view topic) const {
    auto it = by_topic_.find(topic);
    return it == by_topic_.end() ? nullptr : &it->second;
  }
  // Calls f(const MessagePtr&) for every retained message, '$' topics too.
  template <typename F>
  void forEach(F&& f) const {
    for (const auto& [topic, m] : by_topic_) f(m);
  }
  size_t size() const { return by_topic_.size(); }
  // Those whose topic starts with `prefix` (linear in their number).
  size_t countWithPrefix(std::string_view prefix) const {
    size_t n = 0;
    for (auto it = by_topic_.lower_bound(prefix); it != by_topic_.end() && it->first.starts_with(prefix); ++it) ++n;
    return n;
  }

 private:
  std::map<std::string, MessagePtr, std::less<>> by_topic_;
};

}  // namespace petrel

#include "mqtt/topic.h"

namespace petrel {

template <typename F>
void RetainedStore::forEachMatch(std::string_view filter, F&& f) const {
  // Every match starts with the filter's part before its first wildcard, so
  // only that range of the ordered map is visited.
  const size_t wild = filter.find_first_of("+#");
  std::string_view prefix = filter.substr(0, wild);
  // "a/#" also matches "a" itself [MQTT-4.7.1-2]: drop the trailing '/'.
  if (!prefix.empty() && prefix.back() == '/' && wild != std::string_view::npos)
    prefix.remove_suffix(1);
  auto it = prefix.empty() ? by_topic_.begin() : by_topic_.lower_bound(prefix);
  for (; it != by_topic_.end(); ++it) {
    if (!prefix.empty() && it->first.compare(0, prefix.size(), prefix) != 0) break;
    if (mqtt::topicMatches(filter, it->first)) f(it->second);
  }
}

}  // namespace petrel
