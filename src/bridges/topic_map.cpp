#include "src/bridges/topic_map.h"

#include "mqtt/topic.h"

namespace petrel {

namespace {

// `topic` matched `from_prefix + pattern`: swap the prefix.
void swapPrefix(std::string_view topic, const std::string& from_prefix, const std::string& to_prefix,
                std::string& out) {
  out.assign(to_prefix);
  out.append(topic.substr(from_prefix.size()));
}

}  // namespace

bool TopicMap::toRemote(std::string_view local, std::string& remote) const {
  for (const Rule& r : rules_) {
    if (!r.topic->out() || !mqtt::topicMatches(r.local_filter, local)) continue;
    swapPrefix(local, r.topic->local_prefix, r.topic->remote_prefix, remote);
    return true;
  }
  return false;
}

bool TopicMap::toLocal(std::string_view remote, std::string& local) const {
  for (const Rule& r : rules_) {
    if (!r.topic->in() || !mqtt::topicMatches(r.remote_filter, remote)) continue;
    swapPrefix(remote, r.topic->remote_prefix, r.topic->local_prefix, local);
    return true;
  }
  return false;
}

}  // namespace petrel
