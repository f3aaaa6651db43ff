// src/acks/held_output.h — a connection's output that waits: answers to
// packets whose writes are not committed yet, and everything written after
// them (the client sees its packets in order).
//
// A handler takes a mark() of the connection's output before it writes;
// holdSince() then holds what it wrote until the store has committed batch
// `ticket` -- or, with a gate, until that gate opens (AckGate), whichever
// comes first. Held output is kept in segments, one per batch, so output of
// an older batch is not kept waiting for a newer one. release() moves the
// segments that may go, oldest first, back to the connection's output.
//
// Transport-free: it works on the connection's plain output buffer, so it
// is tested without sockets (tests/unit/src/acks).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/acks/ack_gate.h"

namespace petrel {

class HeldOutput {
 public:
  struct Mark {
    size_t segments;  // held segments when the mark was taken
    size_t size;      // size of the output buffer (no segment) or of the last segment
  };

  bool empty() const { return held_.empty(); }
  // Where new output goes while something is held: behind it.
  std::string& tail() { return held_.back().bytes; }
  Mark mark(const std::string& out) const {
    if (held_.empty()) return {0, out.size()};
    return {held_.size(), held_.back().bytes.size()};
  }
  // Holds what was written since `mark` (to `out`, or to the tail) until
  // `ticket` commits, or until `gate` opens when there is one; and, with
  // `required`, in any case until that opens (another node's copies of a
  // message stored in the cluster's stream: src/cluster/stream.h).
  void holdSince(Mark mark, std::string& out, uint64_t ticket, const AckGatePtr& gate = nullptr,
                 const AckGatePtr& required = nullptr);
  // Appends the segments that may go now to `out`; true if any did.
  bool release(uint64_t committed, std::string& out);
  size_t bytes() const;
  void clear() { held_.clear(); }

 private:
  struct Segment {
    uint64_t ticket;
    std::string bytes;
    std::vector<AckGatePtr> gates;
    bool needs_commit = false;  // some of it waits for the commit in any case
    std::vector<AckGatePtr> required;  // gates it waits for whatever else
    bool releasable(uint64_t committed) const;
    void waitFor(uint64_t t, const AckGatePtr& gate, const AckGatePtr& req);
  };
  std::vector<Segment> held_;
};

}  // namespace petrel
