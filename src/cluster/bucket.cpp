#include "src/cluster/bucket.h"

#include <nats/nats.h>

#include <chrono>
#include <iterator>

#include "src/cluster/nats_options.h"
#include "src/util/log.h"

namespace petrel::cluster {

namespace {

constexpr int kWaitMs = 1500;      // for a JetStream answer
constexpr int kRetryMs = 1000;     // between attempts to open the bucket
constexpr int kIdleWatchMs = 20;   // a put waits at most this long to be made
constexpr int kMaxInFlight = 4096;  // puts awaiting JetStream's answer
constexpr auto kCheckEvery = std::chrono::seconds(1);  // is the watch keeping up?

std::string errorText(natsStatus s) { return natsErrorText(s); }

bool transient(natsStatus s) { return transientNatsError(s); }

}  // namespace

Bucket::Bucket(natsConnection* nc, std::string bucket, std::string what, std::string description, int replicas,
               uint64_t max_pending_bytes, std::function<void()> wake)
    : nc_(nc),
      bucket_(std::move(bucket)),
      what_(std::move(what)),
      description_(std::move(description)),
      replicas_(replicas),
      max_bytes_(max_pending_bytes),
      wake_(std::move(wake)) {
  acks_ = std::make_shared<AckSink>();
  acks_->bucket = this;
  // The client may answer a put after this object is gone (it answers on
  // its own thread until the connection is destroyed): the sink stays.
  keepForGood(acks_);
}

Bucket::~Bucket() { stop(); }

void Bucket::start() { thread_ = std::thread([this] { run(); }); }

void Bucket::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(acks_->mu);
  acks_->bucket = nullptr;
}

void Bucket::put(const std::string& key, std::string value, bool only_new) {
  std::lock_guard<std::mutex> lock(mu_);
  puts_[key] = Put{std::move(value), only_new};
}

void Bucket::take(std::vector<Event>& out) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (out.empty()) {
      out.swap(events_);
    } else {
      for (auto& e : events_) out.push_back(std::move(e));
      events_.clear();
    }
    event_bytes_ = 0;
  }
  cv_.notify_all();  // the watch may be read on
}

Bucket::Counters Bucket::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

namespace {

int64_t steadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void Bucket::rewatch() { rewatch_at_ = steadyMs() + kRewatchDelayMs; }

void Bucket::pause(int ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
}

void Bucket::push(Event e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    event_bytes_ += e.key.size() + e.value.size() + sizeof(Event);
    events_.push_back(std::move(e));
    if (events_.size() > 1) return;  // the loop was told of the first
  }
  wake_();
}

bool Bucket::open() {
  if (natsConnection_Status(nc_) != NATS_CONN_STATUS_CONNECTED) return false;  // tried once linked
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = kWaitMs;
  o.PublishAsync.MaxPending = kMaxInFlight;
  o.PublishAsync.AckHandler = &Bucket::onAck;
  o.PublishAsync.AckHandlerClosure = acks_.get();
  o.PublishAsync.StallWait = kWaitMs;
  natsStatus s = js_ ? NATS_OK : natsConnection_JetStream(&js_, nc_, &o);
  std::string what = "JetStream";
  if (s == NATS_OK && !kv_) {
    // Created if missing; a bucket that exists (made by another node, or
    // with other settings) is used as it is.
    kvConfig c;
    kvConfig_Init(&c);
    c.Bucket = bucket_.c_str();
    c.Description = description_.c_str();
    c.History = 1;
    c.Replicas = replicas_;
    c.StorageType = js_FileStorage;
    what = "bucket " + bucket_;
    s = js_CreateKeyValue(&kv_, js_, &c);
    if (s != NATS_OK) kv_ = nullptr;
    if (s != NATS_OK && !transient(s)) {
      s = js_KeyValue(&kv_, js_, bucket_.c_str());
      if (s != NATS_OK) kv_ = nullptr;
    }
  }
  if (s == NATS_OK && !watcher_) {
    kvWatchOptions w;
    kvWatchOptions_Init(&w);
    w.Timeout = kWaitMs;
    what = "watching bucket " + bucket_;
    kvWatcher* made = nullptr;
    s = kvStore_WatchAll(&made, kv_, &w);
    if (s == NATS_OK) {
      std::lock_guard<std::mutex> lock(mu_);
      watcher_ = made;
      last_revision_ = checked_revision_ = 0;
      behind_checks_ = 0;
    }
  }
  if (s != NATS_OK) {
    const std::string e = what + ": " + errorText(s);
    if (e != last_error_) {
      LOG_WARN("cluster: %s: %s; each node keeps its own until it works (trying again every %d s)", what_.c_str(),
               e.c_str(), kRetryMs / 1000);
      last_error_ = e;
    }
    return false;
  }
  if (!last_error_.empty()) LOG_NOTICE("cluster: %s: bucket %s open", what_.c_str(), bucket_.c_str());
  last_error_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  counters_.watching = true;
  return true;
}

void Bucket::close() {
  kvWatcher* w = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    w = watcher_;
    watcher_ = nullptr;
    counters_.watching = false;
  }
  if (w) {
    kvWatcher_Stop(w);
    kvWatcher_Destroy(w);
  }
}

// Puts go out pipelined (up to kMaxInFlight awaiting JetStream's answer),
// each batch answered before the next goes, so two values of one key are
// never in flight at once; onAck() counts them, and takes back for another
// try the ones refused for a passing reason.
bool Bucket::makePuts(bool last) {
  decltype(puts_) batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(puts_);
  }
  if (batch.empty()) return true;
  if (last && natsConnection_Status(nc_) != NATS_CONN_STATUS_CONNECTED) {
    LOG_WARN("cluster: stopping unlinked with %zu entries (%s) not put in bucket %s", batch.size(), what_.c_str(),
             bucket_.c_str());
    std::lock_guard<std::mutex> lock(mu_);
    counters_.put_failed += batch.size();
    return false;
  }
  const int64_t max_payload = natsConnection_GetMaxPayload(nc_);
  const std::string prefix = "$KV." + bucket_ + ".";
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = kWaitMs;  // an answer that does not come is an error (onAck), not a wait for ever
  bool ok = true;
  std::string subject;
  for (auto it = batch.begin(); it != batch.end(); ++it) {
    const std::string& key = it->first;
    const std::string& value = it->second.value;
    if (max_payload > 0 && int64_t(value.size()) >= max_payload) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++counters_.put_failed;
      }
      LOG_WARN("cluster: key %s not put in bucket %s: larger than the NATS server's max_payload "
               "(it stays on this node)", key.c_str(), bucket_.c_str());
      continue;
    }
    subject = prefix + key;
    po.ExpectNoMessage = it->second.only_new;
    const natsStatus s = js_PublishAsync(js_, subject.c_str(), value.data(), static_cast<int>(value.size()), &po);
    if (s == NATS_OK) continue;
    std::lock_guard<std::mutex> lock(mu_);
    if (last || !transient(s)) {
      const auto left = static_cast<unsigned long>(std::distance(it, batch.end()));
      LOG_WARN("cluster: %lu entries (%s) not put in bucket %s: %s (they stay on this node)", left, what_.c_str(),
               bucket_.c_str(), errorText(s).c_str());
      counters_.put_failed += left;
      ok = false;
      break;
    }
    // These go back, unless the loop has put a newer value since.
    for (; it != batch.end(); ++it) puts_.try_emplace(it->first, std::move(it->second));
    ok = false;
    break;
  }
  jsPubOptions wait;
  jsPubOptions_Init(&wait);
  wait.MaxWait = 2 * kWaitMs;
  if (js_PublishAsyncComplete(js_, &wait) != NATS_OK) ok = false;
  std::lock_guard<std::mutex> lock(mu_);
  return ok && puts_.empty();
}

void Bucket::onAck(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  auto* sink = static_cast<AckSink*>(closure);
  std::lock_guard<std::mutex> hold(sink->mu);
  Bucket* self = sink->bucket;
  if (self) {
    std::lock_guard<std::mutex> lock(self->mu_);
    if (pa) {
      ++self->counters_.put;
    } else if (pae && static_cast<jsErrCode>(pae->ErrCode) == JSStreamWrongLastSequenceErr) {
      // An `only_new` put: the bucket's value stays, and the watch brings it.
      LOG_INFO("cluster: bucket %s already held a value for %s; it stays", self->bucket_.c_str(),
               natsMsg_GetSubject(msg));
    } else if (pae && !refusedForGood(pae->Err, pae->ErrCode)) {
      // Tried again, unless the loop has put a newer value since; an
      // `only_new` put stays one (its message carries the check).
      const std::string_view subject = natsMsg_GetSubject(msg);
      const size_t skip = 4 + self->bucket_.size() + 1;  // "$KV." bucket "."
      const char* expected = nullptr;
      const bool only_new = natsMsgHeader_Get(msg, "Nats-Expected-Last-Subject-Sequence", &expected) == NATS_OK &&
                            expected && std::string_view(expected) == "0";
      if (subject.size() > skip)
        self->puts_.try_emplace(std::string(subject.substr(skip)),
                                Put{std::string(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg))),
                                    only_new});
    } else {
      ++self->counters_.put_failed;
      LOG_WARN("cluster: an entry not put in bucket %s: %s (it stays on this node)", self->bucket_.c_str(),
               pae && pae->ErrText ? pae->ErrText : "refused");
    }
  }
  natsMsg_Destroy(msg);
}

void Bucket::readWatch() {
  bool puts_waiting = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    puts_waiting = !puts_.empty();
  }
  for (int i = 0; i < 4096; ++i) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      // The loop is behind: the entries wait in the bucket.
      if (event_bytes_ > max_bytes_) {
        cv_.wait_for(lock, std::chrono::milliseconds(kIdleWatchMs), [this] { return stopping_ || event_bytes_ <= max_bytes_; });
        return;
      }
      if (stopping_) return;
    }
    kvEntry* e = nullptr;
    const natsStatus s = kvWatcher_Next(&e, watcher_, i == 0 && !puts_waiting ? kIdleWatchMs : 1);
    if (s == NATS_TIMEOUT) return;
    if (s != NATS_OK) {
      LOG_WARN("cluster: %s: the watch on bucket %s ended (%s); watching again", what_.c_str(), bucket_.c_str(),
               errorText(s).c_str());
      close();
      return;
    }
    if (!e) {
      push({Event::SyncEnd, {}, {}});
      continue;
    }
    last_revision_ = kvEntry_Revision(e);
    const kvOperation op = kvEntry_Operation(e);
    Event ev{op == kvOp_Put ? Event::Put : Event::Delete, kvEntry_Key(e), {}};
    if (ev.kind == Event::Put)
      ev.value.assign(static_cast<const char*>(kvEntry_Value(e)), static_cast<size_t>(kvEntry_ValueLen(e)));
    kvEntry_Destroy(e);
    push(std::move(ev));
  }
}

bool Bucket::watchStuck() {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_check_) return false;
  next_check_ = now + kCheckEvery;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const std::string stream = "KV_" + bucket_;
  if (js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &jerr) != NATS_OK || !si) return false;
  const uint64_t last = si->State.LastSeq;
  jsStreamInfo_Destroy(si);
  const bool behind = last > last_revision_ && last_revision_ == checked_revision_;
  checked_revision_ = last_revision_;
  behind_checks_ = behind ? behind_checks_ + 1 : 0;
  if (behind_checks_ < 2) return false;
  behind_checks_ = 0;
  LOG_NOTICE("cluster: %s: the watch on bucket %s stopped at revision %llu of %llu; watching again", what_.c_str(),
             bucket_.c_str(), static_cast<unsigned long long>(last_revision_), static_cast<unsigned long long>(last));
  return true;
}

void Bucket::run() {
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
    }
    int64_t at = rewatch_at_.load();
    if (at && steadyMs() >= at && rewatch_at_.compare_exchange_strong(at, 0) && watcher_) close();
    if (watcher_ && watchStuck()) close();
    if (!watcher_) {
      if (!open()) {
        pause(kRetryMs);
        continue;
      }
      push({Event::SyncStart, {}, {}});
    }
    if (!makePuts(false)) pause(200);
    if (watcher_) readWatch();
  }
  if (kv_) makePuts(true);
  close();
  if (kv_) kvStore_Destroy(kv_);
  kv_ = nullptr;
  if (js_) jsCtx_Destroy(js_);
  js_ = nullptr;
}

}  // namespace petrel::cluster
