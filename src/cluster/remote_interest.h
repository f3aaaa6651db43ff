// src/cluster/remote_interest.h — what the other nodes of a cluster have
// asked for, from their announcements (cluster.h): a node sends a message to
// NATS only when another node has a filter that matches it, so traffic
// between a node's own clients costs NATS nothing.
//
// Each node announces its filters with a generation number: one at a time
// as they come and go ('+', '-'), and in full when it (re)joins, when
// another node says hello, and every few minutes: its filters, then "end
// of generation G", which drops what that node announced before G and did
// not announce again. A node with very many filters announces "all"
// instead. Until the end of a full announcement the older entries stay, so
// the table never holds less than the node asked for. A node not heard
// from for a long time (it died) is forgotten.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "src/util/keyed_hash.h"

namespace petrel::cluster {

// Topic filters with a count each, and whether any matches a topic (MQTT's
// rules, the '$' one included).
class FilterSet {
 public:
  FilterSet();
  ~FilterSet();
  void add(std::string_view filter);
  void remove(std::string_view filter);  // one of the filter's adds
  bool matches(std::string_view topic) const;
  size_t size() const { return size_; }

 private:
  struct Node;
  std::unique_ptr<Node> root_;
  size_t size_ = 0;  // distinct filters
};

class RemoteInterest {
 public:
  void add(uint64_t node, uint64_t gen, std::string_view filter, int64_t now_ms);
  void remove(uint64_t node, std::string_view filter, int64_t now_ms);
  // The node wants every message (it has too many filters to list).
  void all(uint64_t node, uint64_t gen, int64_t now_ms);
  // A full announcement of generation `gen` ended: what the node announced
  // before it and not again is dropped.
  void end(uint64_t node, uint64_t gen, int64_t now_ms);
  // Nodes not heard from since `before_ms` are forgotten.
  void expire(int64_t before_ms);
  // The node said it is leaving: forgotten now.
  void forget(uint64_t node);

  // Some other node wants `topic`.
  bool wants(std::string_view topic) const { return all_nodes_ > 0 || filters_.matches(topic); }
  // Calls f(node id) for each node that wants `topic`.
  template <typename F>
  void forEachWanting(std::string_view topic, F&& f) const {
    for (const auto& [id, n] : nodes_)
      if (n.all_gen != 0 || n.set.matches(topic)) f(id);
  }
  // The node has been heard from (and not forgotten).
  bool knows(uint64_t node) const { return nodes_.count(node) != 0; }
  size_t nodes() const { return nodes_.size(); }
  size_t filters() const { return filters_.size(); }

 private:
  struct Node {
    std::unordered_map<std::string, uint64_t, KeyedHash, std::equal_to<>> filters;  // filter -> generation
    FilterSet set;  // the same filters, to match a topic against
    uint64_t all_gen = 0;  // 0: not "all"
    int64_t heard_ms = 0;
  };
  Node& heard(uint64_t node, int64_t now_ms);
  void drop(Node& n);

  std::unordered_map<uint64_t, Node> nodes_;
  FilterSet filters_;      // every node's filters together
  size_t all_nodes_ = 0;   // nodes that want everything
};

}  // namespace petrel::cluster
