#include "src/acks/ack_holds.h"

#include "src/util/log.h"

namespace petrel {

void AckHolds::hold(Connection& c, Connection::OutMark mark, uint64_t ticket, const AckGatePtr& gate,
                    const AckGatePtr& required) {
  c.holdSince(mark, ticket, gate, required);
  if (!c.in_held_list) {
    c.in_held_list = true;
    held_.push_back(&c);
  }
}

void AckHolds::release(uint64_t committed) {
  for (size_t i = 0; i < held_.size();) {
    Connection* c = held_[i];
    if (!c->release(committed)) {
      c->in_held_list = false;
      held_[i] = held_.back();
      held_.pop_back();
      continue;
    }
    ++i;
  }
}

void AckHolds::commitFailed() {
  for (Connection* c : held_) {
    if (!c->holding()) continue;
    // The batch holding these messages was not stored: the client must
    // not see their acknowledgements. Closing makes it send them again.
    LOG_ERROR("persistence: a commit failed; closing %s so that it resends", c->peer().c_str());
    c->dropHeld();
    c->closeAfterFlush();
  }
}

void AckHolds::remove(Connection& c) {
  if (!c.in_held_list) return;
  for (size_t j = 0; j < held_.size(); ++j) {
    if (held_[j] == &c) {
      held_[j] = held_.back();
      held_.pop_back();
      break;
    }
  }
}

}  // namespace petrel
