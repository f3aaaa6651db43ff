#include "src/routing/retained_store.h"

namespace petrel {

void RetainedStore::set(const MessagePtr& msg) {
  if (msg->payload.empty()) {
    auto it = by_topic_.find(msg->topic);
    if (it != by_topic_.end()) by_topic_.erase(it);
    return;
  }
  by_topic_.insert_or_assign(msg->topic, msg);
}

void RetainedStore::erase(std::string_view topic) {
  auto it = by_topic_.find(topic);
  if (it != by_topic_.end()) by_topic_.erase(it);
}

}  // namespace petrel
