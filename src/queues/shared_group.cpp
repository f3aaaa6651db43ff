// Share strategies by name (shared.strategy in the configuration).
#include "src/queues/shared_group.h"

namespace petrel {

bool parseShareStrategy(std::string_view n, ShareStrategy& out) {
  if (n == "round_robin") out = ShareStrategy::RoundRobin;
  else if (n == "random") out = ShareStrategy::Random;
  else if (n == "sticky") out = ShareStrategy::Sticky;
  else if (n == "hash_clientid") out = ShareStrategy::HashClientId;
  else if (n == "hash_topic") out = ShareStrategy::HashTopic;
  else if (n == "least_inflight") out = ShareStrategy::LeastInflight;
  else return false;
  return true;
}

const char* shareStrategyName(ShareStrategy s) {
  switch (s) {
    case ShareStrategy::RoundRobin: return "round_robin";
    case ShareStrategy::Random: return "random";
    case ShareStrategy::Sticky: return "sticky";
    case ShareStrategy::HashClientId: return "hash_clientid";
    case ShareStrategy::HashTopic: return "hash_topic";
    case ShareStrategy::LeastInflight: return "least_inflight";
  }
  return "?";
}

}  // namespace petrel
