#include "src/acks/held_output.h"

#include <algorithm>

namespace petrel {

void HeldOutput::Segment::waitFor(uint64_t t, const AckGatePtr& gate, const AckGatePtr& req) {
  if (req) required.push_back(req);
  if (gate) gates.push_back(gate);
  else needs_commit = true;
  if (ticket < t) ticket = t;
}

bool HeldOutput::Segment::releasable(uint64_t committed) const {
  for (const auto& r : required)
    if (!r->open()) return false;
  if (ticket <= committed) return true;
  if (needs_commit) return false;
  for (const auto& g : gates)
    if (!g->open()) return false;
  return true;
}

void HeldOutput::holdSince(Mark mark, std::string& out, uint64_t ticket, const AckGatePtr& gate,
                           const AckGatePtr& required) {
  if (mark.segments == 0) {
    const size_t m = std::min(mark.size, out.size());
    if (held_.empty()) {
      held_.push_back(Segment{ticket, out.substr(m), {}, false, {}});
      out.resize(m);
      held_.back().waitFor(ticket, gate, required);
      return;
    }
    // A hold began during the handler: the bytes the handler wrote before
    // it join the front of the hold, keeping their order.
    if (m < out.size()) {
      held_.front().bytes.insert(0, out, m, std::string::npos);
      out.resize(m);
    }
    for (auto& h : held_) h.waitFor(ticket, gate, required);
    return;
  }
  if (held_.size() == mark.segments) {
    Segment& last = held_.back();
    if (last.ticket == ticket || mark.size >= last.bytes.size()) {
      if (mark.size >= last.bytes.size() && last.ticket != ticket) {
        // Nothing written by this handler: an empty segment of its own keeps
        // the older output from waiting for the newer batch.
        held_.push_back(Segment{ticket, {}, {}, false, {}});
        held_.back().waitFor(ticket, gate, required);
        return;
      }
      last.waitFor(ticket, gate, required);  // same batch
      return;
    }
    // What this handler wrote becomes a segment of its own, so the output
    // before it is released with its own (older) batch.
    Segment n{ticket, last.bytes.substr(mark.size), {}, false, {}};
    last.bytes.resize(mark.size);
    held_.push_back(std::move(n));
    held_.back().waitFor(ticket, gate, required);
    return;
  }
  // Segments were added while the handler ran: they and the tail of the
  // segment it started in wait for this too.
  for (size_t i = mark.segments - 1; i < held_.size(); ++i) held_[i].waitFor(ticket, gate, required);
}

bool HeldOutput::release(uint64_t committed, std::string& out) {
  size_t n = 0;
  while (n < held_.size() && held_[n].releasable(committed)) {
    out.append(held_[n].bytes);
    ++n;
  }
  if (n) held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(n));
  return n > 0;
}

size_t HeldOutput::bytes() const {
  size_t n = 0;
  for (const auto& h : held_) n += h.bytes.size();
  return n;
}

}  // namespace petrel
