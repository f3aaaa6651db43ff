#include "src/durable/durable.h"

#include <algorithm>

#include "mqtt/properties.h"
#include "src/durable/records.h"
#include "src/util/log.h"

namespace petrel {

void Durable::attach(std::unique_ptr<persistence::Store> store, std::function<void(bool failed)> on_commit) {
  store_ = std::move(store);
  on_commit_ = std::move(on_commit);
  next_msg_id_ = store_->maxMessageId() + 1;
  uv_async_init(loop_, &commit_async_, &Durable::onCommitAsync);
  commit_async_.data = this;
  store_->setCommitCallback([this](uint64_t ticket, bool ok) {
    // Writer thread: only atomics and uv_async_send here.
    if (!ok) {
      uint64_t prev = failed_upto_.load();
      while (prev < ticket && !failed_upto_.compare_exchange_weak(prev, ticket)) {
      }
    }
    uv_async_send(&commit_async_);
  });
}

void Durable::onCommitAsync(uv_async_t* h) {
  auto* self = static_cast<Durable*>(h->data);
  const bool failed = self->failed_upto_.exchange(0) != 0;
  self->on_commit_(failed);
}

void Durable::unref() {
  // The writer thread may still signal: the notifier stays open until
  // finish(), but no longer keeps the loop running.
  if (store_) uv_unref(reinterpret_cast<uv_handle_t*>(&commit_async_));
}

void Durable::finish() {
  if (!store_) return;
  // Everything submitted is committed and its callback has returned; no
  // more signals can come, so the notifier can close.
  store_->drain();
  store_->setCommitCallback(nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&commit_async_), nullptr);
  uv_run(loop_, UV_RUN_NOWAIT);
}

void Durable::putMessage(const Message& m, uint32_t refs) {
  // One record for the message, referenced by every durable queue entry
  // (and the retained slot) that holds it: stored once, not per receiver.
  // Written from the message's own fields; only an MQTT 5 property block
  // is encoded first.
  persistence::MessageView v{m.topic, m.payload, {}, m.origin, m.qos, m.retain, m.expires_at_ms};
  if (m.props) {
    props_scratch_.clear();
    mqtt::encodeProperties(*m.props, props_scratch_);
    v.props = props_scratch_;
  }
  store_->batch().putMessage(m.id, v, refs);
}

MessagePtr Durable::loadMessage(uint64_t id) { return std::move(loadMessages({id}).front()); }

std::vector<MessagePtr> Durable::loadMessages(const std::vector<uint64_t>& ids) {
  std::vector<MessagePtr> out(ids.size());
  std::vector<uint64_t> missing;
  std::vector<size_t> where;  // index in `out` of each missing id
  for (size_t i = 0; i < ids.size(); ++i) {
    auto it = msg_cache_.find(ids[i]);
    if (it != msg_cache_.end() && (out[i] = it->second.lock())) continue;
    missing.push_back(ids[i]);
    where.push_back(i);
  }
  // readMessages calls back in the order of `missing`, skipping ids it has
  // no record of.
  size_t j = 0;
  store_->readMessageViews(missing, [&](uint64_t id, const persistence::MessageView& r) {
    while (j < missing.size() && missing[j] != id) ++j;
    if (j == missing.size()) return;
    // An id twice in the window is read twice but shared, as loadMessage
    // would share it.
    auto [it, added] = msg_cache_.try_emplace(id);
    MessagePtr p = added ? nullptr : it->second.lock();
    if (!p) {
      p = messageFromView(r, id);
      it->second = p;
    }
    out[where[j++]] = std::move(p);
  });
  return out;
}

void Durable::trimCache(size_t keep) {
  if (msg_cache_.size() <= std::max(keep, trim_at_)) return;
  for (auto it = msg_cache_.begin(); it != msg_cache_.end();)
    it = it->second.expired() ? msg_cache_.erase(it) : std::next(it);
  trim_at_ = 2 * msg_cache_.size();
}

bool Durable::full() {
  const bool is_full = store_->usedBytes() > store_->mapSize() / 10 * 9;
  if (is_full && !full_logged_) {
    full_logged_ = true;
    LOG_ERROR("persistence: the store is 90%% full (persistence.max_size_mb = %llu); "
              "new messages for durable queues are dropped",
              static_cast<unsigned long long>(store_->mapSize() >> 20));
  } else if (!is_full) {
    full_logged_ = false;
  }
  return is_full;
}

}  // namespace petrel
