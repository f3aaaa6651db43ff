// src/acks/ack_holds.h — the connections whose output waits for a commit
// or a gate (HeldOutput), and releasing it when it may go.
//
// Ordering argument: batches commit in ticket order, and a client's output
// is released only when the ticket of its last handler has committed (or
// its gates opened), so when a PUBACK goes out every write that the PUBLISH
// caused (queue entries, the message record, the retained slot) is on disk
// -- or every receiver that needed it has acknowledged it.
//
// May call: Connection (hold/release), nothing else.
#pragma once

#include <cstdint>
#include <vector>

#include "src/acks/ack_gate.h"
#include "src/transport/connection.h"

namespace petrel {

class AckHolds {
 public:
  // Holds what `c` wrote since `mark` until `ticket` commits or `gate`
  // opens, and in any case until `required` opens.
  void hold(Connection& c, Connection::OutMark mark, uint64_t ticket, const AckGatePtr& gate = nullptr,
            const AckGatePtr& required = nullptr);
  // A receiver's acknowledgement opened a gate: releaseIfGatesOpened() at
  // the end of the loop turn looks at the held output again.
  void gateOpened() { gates_opened_ = true; }
  void releaseIfGatesOpened(uint64_t committed) {
    if (!gates_opened_) return;
    gates_opened_ = false;
    release(committed);
  }
  // Releases everything that may go now.
  void release(uint64_t committed);
  // A commit failed: held acknowledgements must never go out. The clients
  // are closed so that they send those messages again.
  void commitFailed();
  // `c` is being freed.
  void remove(Connection& c);

 private:
  std::vector<Connection*> held_;  // connections with held output
  bool gates_opened_ = false;
};

}  // namespace petrel
