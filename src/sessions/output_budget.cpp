// Output flow control: what the broker does when clients read slower than
// messages arrive for them.
//
// Policy (README, "Flow control"):
// * QoS 1/2 are never dropped for lack of buffer space. Above
//   kOutputHighWater of buffered output a client's QoS 1/2 messages wait in
//   its session queue (the RAM window, then the store for a durable
//   session) and are sent as its socket drains; only the configured queue
//   limits drop them.
// * QoS 0 is buffered so that a reading client rides out a burst: up to
//   limits.max_client_output per client, and while the sum over all clients
//   stays within limits.max_output_memory. A client over its budget has its
//   QoS 0 dropped -- that client only: the publishers and every other
//   subscriber go on at full speed, so a client that stopped reading is
//   isolated. When the broker-wide sum is exceeded, each congested client
//   (over the high-water mark) is held to an equal share of the budget, so
//   the largest buffers (the stuck readers) are cut first.
// * Drops are counted per connection (logged with the client id when they
//   start and when the connection ends) and in
//   $SYS/broker/messages/dropped/output_budget.
#include "src/sessions/output_budget.h"

#include <uv.h>

#include <cstdio>

#include "src/sessions/session.h"
#include "src/util/cgroup_limits.h"
#include "src/util/log.h"

namespace petrel {

namespace {

std::string mib(uint64_t bytes) {
  char s[32];
  snprintf(s, sizeof s, "%.0f MiB", static_cast<double>(bytes) / (1 << 20));
  return s;
}

}  // namespace

OutputBudget::OutputBudget(const Config& cfg, BrokerStats& stats)
    : cfg_(cfg), stats_(stats), limit_(cfg.max_output_memory) {
  if (limit_ != 0) return;
  const uint64_t ram = uv_get_total_memory();
  const std::optional<MemoryLimit> cgroup = ownMemoryLimit();
  limit_ = autoOutputMemory(ram, cgroup);
  sized_by_ = "limits.max_output_memory: auto: " + mib(limit_) + ", with " + mib(ram) + " of RAM";
  if (cgroup && cgroup->bytes < ram)
    sized_by_ += " and a memory limit of " + mib(cgroup->bytes) + " (cgroup " + cgroup->where + ")";
  else
    sized_by_ += " and no lower memory limit";
}

void OutputBudget::account(Connection& c) {
  const size_t now = c.handleClosed() ? 0 : c.pendingOutput();
  const size_t before = c.accounted_output;
  if (now == before) return;
  total_ += now;
  total_ -= std::min<uint64_t>(total_, before);
  const bool was = before > Connection::kOutputHighWater, is = now > Connection::kOutputHighWater;
  if (is && !was) ++congested_;
  if (was && !is && congested_) --congested_;
  c.accounted_output = now;
}

void OutputBudget::remove(Connection& c) {
  total_ -= std::min<uint64_t>(total_, c.accounted_output);
  if (c.accounted_output > Connection::kOutputHighWater && congested_) --congested_;
  c.accounted_output = 0;
}

bool OutputBudget::qos0Allowed(const Session& s, Connection& c) {
  // The total is brought up to date with this client first: output handed
  // to a worker loop's socket without a flush here (a fan-out's shared
  // encoding, Connection::writeShared) reaches it no other way while the
  // client reads nothing. Below the high-water mark a client is not asked
  // about, and not counted until its next flush or write: at most
  // kOutputHighWater per connection, the least a share ever is anyway.
  account(c);
  const size_t pending = c.pendingOutput();
  uint64_t budget = cfg_.max_client_output;
  if (total_ > limit_) {
    const uint64_t share = limit_ / std::max<size_t>(1, congested_);
    budget = std::min(budget, std::max<uint64_t>(share, Connection::kOutputHighWater));
  }
  if (pending < budget) return true;
  if (c.dropped_qos0++ == 0)
    LOG_WARN("client %s: %zu bytes of output not yet read by the client (budget %llu): "
             "dropping QoS 0 messages for it",
             s.clientId().c_str(), pending, static_cast<unsigned long long>(budget));
  ++stats_.qos0_dropped_output;
  ++stats_.messages_dropped;
  return false;
}

}  // namespace petrel
