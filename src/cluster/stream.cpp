#include "src/cluster/stream.h"

#include <nats/nats.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "src/cluster/nats_options.h"
#include "src/util/log.h"

namespace petrel::cluster {

namespace {

constexpr int kWaitMs = 2000;       // for a JetStream answer
constexpr int kRetryMs = 1000;      // between attempts to open the stream
constexpr int kMaxInFlight = 4096;  // copies awaiting JetStream's answer
constexpr int kFetchBatch = 256;
constexpr int kRefusedPauseMs = 100;  // before sending again what JetStream refused for now
constexpr int kFetchWaitMs = 500;   // a fetch with nothing to take returns after this
constexpr int64_t kAckWaitMs = 30 * 1000;  // a copy taken and not acknowledged comes again after this
constexpr int64_t kDuplicatesMs = 2 * 60 * 1000;  // JetStream drops a copy stored twice within this

bool transient(natsStatus s) { return transientNatsError(s); }

// Every copy's id, for JetStream's duplicate window: this run's random id
// and the copy's token.
std::string msgId(uint64_t run, uint64_t token) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64 "-%" PRIu64, run, token);
  return buf;
}

bool tokenOf(const char* id, uint64_t& token) {
  if (!id) return false;
  const char* dash = std::strchr(id, '-');
  if (!dash) return false;
  char* end = nullptr;
  token = std::strtoull(dash + 1, &end, 10);
  return end && *end == '\0';
}

uint64_t& runId() {
  static uint64_t id = [] {
    std::random_device rd;
    return uint64_t(rd()) << 32 | rd();
  }();
  return id;
}

}  // namespace

Stream::Stream(natsConnection* nc, std::string stream, std::string subject_prefix, std::string node, int replicas,
               uint64_t max_pending_bytes, std::function<void()> wake)
    : nc_(nc),
      stream_(std::move(stream)),
      prefix_(std::move(subject_prefix)),
      node_(std::move(node)),
      own_prefix_(prefix_ + node_ + "."),
      replicas_(replicas),
      max_bytes_(max_pending_bytes),
      wake_(std::move(wake)) {
  acks_ = std::make_shared<AckSink>();
  acks_->stream = this;
  // The client may answer a publish after this object is gone (it answers
  // on its own thread until the connection is destroyed): the sink stays.
  keepForGood(acks_);
}

Stream::~Stream() { stop(); }

void Stream::start() {
  publisher_ = std::thread([this] { runPublish(); });
  fetcher_ = std::thread([this] { runFetch(); });
}

void Stream::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !publisher_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (fetcher_.joinable()) fetcher_.join();
  if (publisher_.joinable()) publisher_.join();
  {
    std::lock_guard<std::mutex> lock(acks_->mu);
    acks_->stream = nullptr;
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (In& i : in_) natsMsg_Destroy(i.msg);
  in_.clear();
  if (sub_) natsSubscription_Destroy(sub_);
  sub_ = nullptr;
  if (js_) jsCtx_Destroy(js_);
  js_ = nullptr;
  ready_ = false;
}

void Stream::publish(Out o) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    out_.push_back(std::move(o));
    if (out_.size() > 1) return;
  }
  cv_.notify_all();
}

void Stream::take(std::vector<In>& in, std::vector<Done>& done) {
  std::lock_guard<std::mutex> lock(mu_);
  in.swap(in_);
  done.swap(done_);
}

void Stream::ack(natsMsg* m) {
  // Buffered by the client (its thread writes it): the loop does not wait.
  // One lost (the link down) makes the copy come again after kAckWaitMs.
  natsMsg_Ack(m, nullptr);
  settled(m);
}

void Stream::release(natsMsg* m) { settled(m); }

void Stream::settled(natsMsg* m) {
  const bool had_room = roomToTake();
  outstanding_bytes_ -= static_cast<uint64_t>(natsMsg_GetDataLength(m));
  natsMsg_Destroy(m);
  --outstanding_;
  if (had_room) return;
  { std::lock_guard<std::mutex> lock(mu_); }  // the fetcher is waiting, not about to
  cv_.notify_all();
}

Stream::Counters Stream::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  Counters c = counters_;
  c.ready = ready_.load();
  return c;
}

void Stream::pause(int ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
}

// The stream (created if missing: a work queue over "<name>.q.>", kept on
// `replicas` servers) and this node's durable consumer of its own subject.
bool Stream::open() {
  std::lock_guard<std::mutex> lock(open_mu_);
  if (ready_) return true;
  if (natsConnection_Status(nc_) != NATS_CONN_STATUS_CONNECTED) return false;
  natsStatus s = NATS_OK;
  std::string what = "JetStream";
  if (!js_) {
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = kWaitMs;
    o.PublishAsync.MaxPending = kMaxInFlight;
    o.PublishAsync.AckHandler = &Stream::onAck;
    o.PublishAsync.AckHandlerClosure = acks_.get();
    o.PublishAsync.StallWait = kWaitMs;
    s = natsConnection_JetStream(&js_, nc_, &o);
    if (s != NATS_OK) js_ = nullptr;
  }
  jsErrCode jerr = static_cast<jsErrCode>(0);
  if (s == NATS_OK) {
    what = "stream " + stream_;
    int e = 0;
    s = static_cast<natsStatus>(addStream(stream_, prefix_ + ">", "Petrel: QoS 1 and 2 messages on their way to another node", e));
    jerr = static_cast<jsErrCode>(e);
  }
  for (size_t i = 0; s == NATS_OK && i < extra_.size(); ++i) {
    what = "stream " + extra_[i].name;
    int e = 0;
    s = static_cast<natsStatus>(addStream(extra_[i].name, extra_[i].subjects, extra_[i].description, e));
    jerr = static_cast<jsErrCode>(e);
  }
  if (s == NATS_OK && !sub_) {
    what = "consumer " + node_ + " of stream " + stream_;
    const std::string filter = own_prefix_ + ">";
    // Made here and bound to, so that closing the subscription never
    // deletes it (what waits for this node stays while it is away).
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = node_.c_str();
    cc.Description = "Petrel: the messages for one node";
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = kAckWaitMs * 1000 * 1000;  // nanoseconds
    cc.MaxAckPending = kWindow;
    cc.FilterSubject = filter.c_str();
    jsConsumerInfo* ci = nullptr;
    if (renew_consumer_) {
      // Made anew: what the dead node had taken and not acknowledged is
      // delivered at once, not after kAckWaitMs (a work queue keeps every
      // message no consumer acknowledged).
      jsErrCode derr = static_cast<jsErrCode>(0);
      const natsStatus d = js_DeleteConsumer(js_, stream_.c_str(), node_.c_str(), nullptr, &derr);
      if (d != NATS_OK && d != NATS_NOT_FOUND && derr != JSConsumerNotFoundErr && transient(d)) s = d;
      else renew_consumer_ = false;
    }
    if (s == NATS_OK) s = js_AddConsumer(&ci, js_, stream_.c_str(), &cc, nullptr, &jerr);
    if (ci) jsConsumerInfo_Destroy(ci);
    // One that exists with other settings is used as it is.
    if (s != NATS_OK && !transient(s)) s = NATS_OK;
    if (s == NATS_OK) {
      jsSubOptions so;
      jsSubOptions_Init(&so);
      so.Stream = stream_.c_str();
      so.Consumer = node_.c_str();
      natsSubscription* sub = nullptr;
      jerr = static_cast<jsErrCode>(0);
      s = js_PullSubscribe(&sub, js_, filter.c_str(), node_.c_str(), nullptr, &so, &jerr);
      if (s == NATS_OK) sub_ = sub;
    }
  }
  if (s != NATS_OK) {
    std::string e = what + ": " + natsErrorText(s);
    if (jerr) e += " (JetStream error " + std::to_string(int(jerr)) + ")";
    if (e != last_error_) {
      LOG_WARN("cluster: %s; QoS 1 and 2 messages to other nodes are not acknowledged until it works "
               "(trying again every %d s)", e.c_str(), kRetryMs / 1000);
      last_error_ = e;
    }
    return false;
  }
  if (!last_error_.empty()) LOG_NOTICE("cluster: stream %s open", stream_.c_str());
  last_error_.clear();
  ready_ = true;
  opened_ = true;
  return true;
}

int Stream::addStream(const std::string& name, const std::string& subjects, const std::string& description,
                      int& jerr) {
  const char* list[] = {subjects.c_str()};
  jsStreamConfig c;
  jsStreamConfig_Init(&c);
  c.Name = name.c_str();
  c.Description = description.c_str();
  c.Subjects = list;
  c.SubjectsLen = 1;
  c.Retention = js_WorkQueuePolicy;
  c.Storage = js_FileStorage;
  c.Replicas = replicas_;
  c.Duplicates = kDuplicatesMs * 1000 * 1000;  // nanoseconds
  jsStreamInfo* si = nullptr;
  jsErrCode e = static_cast<jsErrCode>(0);
  natsStatus s = js_AddStream(&si, js_, &c, nullptr, &e);
  if (si) jsStreamInfo_Destroy(si);
  // One that exists (made by another node, or with other settings) is
  // used as it is.
  if (s != NATS_OK && e == JSStreamNameExistErr) s = NATS_OK;
  jerr = static_cast<int>(e);
  return static_cast<int>(s);
}

void Stream::runPublish() {
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = kWaitMs;  // an answer that does not come is an error (onAck): tried again
  std::deque<Out> batch;
  bool last = false;
  while (!last) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(kRetryMs), [this] { return stopping_ || !out_.empty(); });
      // Stopping: one more pass for what waits, if the stream is open.
      if (stopping_ && (out_.empty() || !ready_)) break;
      last = stopping_;
      if (refused_ && !last) {
        // Refused a moment ago: sent again after a pause, not at once.
        refused_ = false;
        cv_.wait_for(lock, std::chrono::milliseconds(kRefusedPauseMs), [this] { return stopping_; });
        if (stopping_ && !ready_) break;
        last = stopping_;
      }
      batch.swap(out_);
    }
    if (!ready_ && !open()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto it = batch.rbegin(); it != batch.rend(); ++it) out_.push_front(std::move(*it));
      }
      if (last) break;
      batch.clear();
      pause(kRetryMs);
      continue;
    }
    while (!batch.empty()) {
      Out& o = batch.front();
      const std::string id = o.msg_id.empty() ? msgId(runId(), o.token) : o.msg_id;
      if (!o.msg_id.empty()) {
        std::lock_guard<std::mutex> lock(mu_);
        named_.emplace(o.msg_id, o.token);
      }
      po.MsgId = id.c_str();
      natsMsg* m = nullptr;
      natsStatus s = natsMsg_Create(&m, o.subject.c_str(), nullptr, o.body.data(), static_cast<int>(o.body.size()));
      if (s == NATS_OK) s = js_PublishMsgAsync(js_, &m, &po);
      if (m) natsMsg_Destroy(m);  // not taken by the client
      if (s == NATS_OK) {
        batch.pop_front();
        continue;
      }
      if (!o.msg_id.empty()) {
        // No answer will come for this one: its id is forgotten.
        std::lock_guard<std::mutex> lock(mu_);
        auto range = named_.equal_range(o.msg_id);
        for (auto it = range.first; it != range.second; ++it) {
          if (it->second != o.token) continue;
          named_.erase(it);
          break;
        }
      }
      if (!refusedForGood(s, 0)) {
        // The link is down, or the client takes no more for now: these
        // wait for it, in order, and so do their publishers' PUBACKs. As
        // with JetStream's answers (onAck), only a copy too large for NATS
        // is given up: a refusal that may pass is no reason to acknowledge
        // what is not stored.
        std::lock_guard<std::mutex> lock(mu_);
        counters_.retried += batch.size();
        if (!transient(s)) {
          const std::string why = natsErrorText(s);
          if (noteRefusal(why))
            LOG_WARN("cluster: stream %s: messages for another node not sent for now (%s); they are tried again "
                     "and their publishers wait", stream_.c_str(), why.c_str());
        }
        for (auto it = batch.rbegin(); it != batch.rend(); ++it) out_.push_front(std::move(*it));
        batch.clear();
        break;
      }
      LOG_WARN("cluster: messages for another node not stored in stream %s (acknowledged to their publishers "
               "without it): %s", stream_.c_str(), natsErrorText(s).c_str());
      std::lock_guard<std::mutex> lock(mu_);
      done_.push_back({o.token, false, true});
      batch.pop_front();
      if (done_.size() == 1) wake_();
    }
    bool waiting = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      waiting = !out_.empty();
    }
    if (waiting && natsConnection_Status(nc_) != NATS_CONN_STATUS_CONNECTED) pause(200);
  }
  // Stopping: what was published gets its answers (and is tried no more).
  if (js_) {
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = kWaitMs;
    js_PublishAsyncComplete(js_, &wait);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!out_.empty())
    LOG_WARN("cluster: stopping with %zu messages for other nodes not stored in stream %s (their publishers "
             "were not acknowledged)", out_.size(), stream_.c_str());
}

bool Stream::noteRefusal(const std::string& why) {
  refused_ = true;
  if (why == last_refusal_) return false;
  last_refusal_ = why;
  return true;
}

void Stream::onAck(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  auto* sink = static_cast<AckSink*>(closure);
  std::lock_guard<std::mutex> hold(sink->mu);
  Stream* self = sink->stream;
  if (self) {
    const char* id = nullptr;
    uint64_t token = 0;
    natsMsgHeader_Get(msg, "Nats-Msg-Id", &id);
    bool known = tokenOf(id, token);
    bool named = false;
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      if (!known && id) {
        auto it = self->named_.find(id);
        if (it != self->named_.end()) {
          token = it->second;
          self->named_.erase(it);
          known = named = true;
        }
      }
      if (pa) {
        if (known) self->done_.push_back({token, true});
        wake = self->done_.size() == 1;
      } else if (pae && !refusedForGood(pae->Err, pae->ErrCode) && !self->stopping_ && known) {
        // Tried again with the same id: if JetStream stored it after all,
        // its duplicate window drops the second copy. Until it is stored
        // its publisher's PUBACK waits: a refusal that may pass (a limit
        // reached, JetStream unavailable for now) is no reason to release it.
        ++self->counters_.retried;
        if (!transient(pae->Err)) {
          const std::string why = pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err);
          if (self->noteRefusal(why))
            LOG_WARN("cluster: stream %s refused messages for another node for now (%s, JetStream error %d); "
                     "they are tried again and their publishers wait", self->stream_.c_str(), why.c_str(),
                     int(pae->ErrCode));
        }
        Out o;
        o.subject = natsMsg_GetSubject(msg);
        o.body.assign(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
        o.token = token;
        if (named) o.msg_id = id;
        self->out_.push_back(std::move(o));
        self->cv_.notify_all();
      } else {
        if (known) self->done_.push_back({token, false, pae && refusedForGood(pae->Err, pae->ErrCode)});
        wake = self->done_.size() == 1;
        LOG_WARN("cluster: messages for another node not stored in stream %s (acknowledged to their publishers "
                 "without it): %s", self->stream_.c_str(),
                 pae && pae->ErrText ? pae->ErrText : pae ? natsStatus_GetText(pae->Err) : "refused");
      }
    }
    if (wake) self->wake_();
  }
  natsMsg_Destroy(msg);
}

void Stream::checkSettled() {
  jsConsumerInfo* ci = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  if (js_GetConsumerInfo(&ci, js_, stream_.c_str(), node_.c_str(), nullptr, &jerr) != NATS_OK || !ci) return;
  const bool settled = ci->NumPending == 0 && ci->NumAckPending <= int64_t(outstanding_.load());
  jsConsumerInfo_Destroy(ci);
  if (settled) ++settled_marks_;
}

// Two kinds of fetch take turns: one that returns at once with what the
// stream has (up to kFetchBatch), and, when it had nothing, one that waits
// up to kFetchWaitMs for a single message and returns as soon as it comes.
// A fetch for a full batch that waited would return only once the batch
// was full or the wait over: a lone message would wait for it.
void Stream::runFetch() {
  bool wait = false;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      // The loop has as much as it may hold not stored yet: the rest waits
      // in the stream.
      cv_.wait(lock, [this] { return stopping_ || roomToTake(); });
      if (stopping_) break;
    }
    if (!ready_ && !open()) {
      pause(kRetryMs);
      continue;
    }
    natsMsgList list{};
    jsFetchRequest req;
    jsFetchRequest_Init(&req);
    req.Batch = fetchBatchFor(sub_, wait ? 1 : std::min(kWindow - outstanding_.load(), kFetchBatch));
    const int asked = req.Batch;  // the fetch may lower req.Batch
    // The room left; none while nothing is held, so that a message larger
    // than the room is taken when the loop has nothing else.
    const uint64_t used = outstanding_bytes_.load();
    const int held = outstanding_.load();
    req.MaxBytes = held == 0 ? 0 : static_cast<int64_t>(used < max_bytes_ ? max_bytes_ - used : 1);
    req.Expires = int64_t(kFetchWaitMs) * 1000 * 1000;  // nanoseconds
    req.NoWait = !wait;
    const natsStatus s = natsSubscription_FetchRequest(&list, sub_, &req);
    if (s == NATS_OK && list.Count > 0) {
      wait = false;  // more may be there: take it at once
    } else if (s == NATS_OK || s == NATS_TIMEOUT || s == NATS_NOT_FOUND) {
      natsMsgList_Destroy(&list);
      if (watch_settled_ && !wait) checkSettled();
      wait = !wait;  // nothing now: wait for the next one (or look again after a wait)
      continue;
    }
    if (s != NATS_OK) {
      // With messages held, a refusal may only say the next one is larger
      // than the room left: it comes once the loop has acknowledged them.
      if (!transient(s) && held == 0) {
        LOG_WARN("cluster: fetching from stream %s: %s; opening it again", stream_.c_str(), natsErrorText(s).c_str());
        std::lock_guard<std::mutex> lock(open_mu_);
        ready_ = false;
        natsSubscription* old = sub_;
        sub_ = nullptr;
        if (old) natsSubscription_Destroy(old);
      }
      pause(200);
      continue;
    }
    keepFetchToBatch(list.Count, asked, "stream", stream_);
    std::vector<In> got;
    got.reserve(static_cast<size_t>(list.Count));
    for (int i = 0; i < list.Count; ++i) {
      natsMsg* m = list.Msgs[i];
      list.Msgs[i] = nullptr;
      In in;
      in.subject = natsMsg_GetSubject(m);
      in.body.assign(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, m) == NATS_OK && meta) {
        in.stream_seq = meta->Sequence.Stream;
        in.delivered = meta->NumDelivered;
        jsMsgMetaData_Destroy(meta);
      }
      in.msg = m;
      got.push_back(std::move(in));
    }
    natsMsgList_Destroy(&list);
    if (got.empty()) continue;
    uint64_t bytes = 0;
    for (const In& i : got) bytes += static_cast<uint64_t>(natsMsg_GetDataLength(i.msg));
    outstanding_bytes_ += bytes;
    outstanding_ += static_cast<int>(got.size());
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      wake = in_.empty();
      for (In& i : got) in_.push_back(std::move(i));
    }
    if (wake) wake_();
  }
}

}  // namespace petrel::cluster
