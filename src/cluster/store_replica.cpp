#include "src/cluster/store_replica.h"

#include <nats/nats.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <random>
#include <thread>

#include "persistence/codec.h"
#include "persistence/store.h"
#include "src/cluster/nats_options.h"
#include "src/cluster/subjects.h"
#include "src/util/log.h"

namespace petrel::cluster {

namespace {

// A record: a header, then what its kind carries.
//   'L' (log):      pieces of batches, each: ticket, offset in the batch,
//                   more (1: the batch goes on in the next record), bytes.
//   'S' (snapshot): a piece of an op log of Batch::putRaw records: its
//                   offset, more (1: the op log goes on in the next
//                   record), bytes.
//   'E' (end):      on its own subject: the snapshot's record count, bytes
//                   and first record's stream sequence; it is complete.
constexpr uint8_t kMagic = 'P';
constexpr uint8_t kVersion = 1;
constexpr uint8_t kLog = 'L';
constexpr uint8_t kPart = 'S';
constexpr uint8_t kEnd = 'E';
constexpr size_t kHeaderBytes = 3 + 4 + 8 + 4 + 8;
constexpr size_t kPieceOverhead = 8 + 4 + 1 + 4;

struct Header {
  uint8_t kind = 0;
  uint32_t schema = 0;
  uint64_t run = 0;
  uint32_t gen = 0;
  uint64_t ticket = 0;  // S, E: the snapshot's commit
};

void putHeader(std::string& out, uint8_t kind, uint64_t run, uint32_t gen, uint64_t ticket) {
  out.clear();
  persistence::Out o{out};
  o.u8(kMagic);
  o.u8(kVersion);
  o.u8(kind);
  o.u32(persistence::Store::kSchemaVersion);
  o.u64(run);
  o.u32(gen);
  o.u64(ticket);
}

bool readHeader(persistence::In& in, Header& h) {
  if (in.u8() != kMagic || in.u8() != kVersion) return false;
  h.kind = in.u8();
  h.schema = in.fixed<uint32_t>();
  h.run = in.fixed<uint64_t>();
  h.gen = in.fixed<uint32_t>();
  h.ticket = in.fixed<uint64_t>();
  return in.ok && (h.kind == kLog || h.kind == kPart || h.kind == kEnd);
}

uint64_t newRun() {
  std::random_device rd;
  return (uint64_t(rd()) << 32 | rd()) | 1;
}

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Waits until `stream` is set up on its server before a "get message"
// request goes to it. nats-server 2.9 (Debian 12 ships 2.9.10) lists a
// stream it is creating before the stream's store exists, and a get
// request that comes in between crashes the whole server (a nil store in
// jsMsgGetRequest; 2.10 lists the stream only once it is set up). Several
// nodes starting at once hit it: one creates the stream, another finds it
// made and reads from it at once. A direct get is answered by the stream
// itself, which subscribes only once its store is there: while one goes
// unanswered, the stream is not ready. (The stream's settings say first
// whether it exists and takes direct gets; one that does not is read as
// before.) NATS_OK once it answers or cannot be asked that way;
// NATS_NOT_FOUND when there is no such stream; otherwise what went wrong,
// NATS_TIMEOUT when it did not answer within the wait.
natsStatus whenSetUp(jsCtx* js, const std::string& stream, const std::string& subject) {
  constexpr int kProbeWaitMs = 250;
  const int64_t until = nowMs() + StoreReplicaStream::kWaitMs;
  jsStreamInfo* si = nullptr;
  jsErrCode e = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, js, stream.c_str(), nullptr, &e);
  if (s != NATS_OK) return s == NATS_NOT_FOUND || e == JSStreamNotFoundErr ? NATS_NOT_FOUND : s;
  const bool direct = si->Config && si->Config->AllowDirect;
  jsStreamInfo_Destroy(si);
  if (!direct) return NATS_OK;
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = kProbeWaitMs;
  while (true) {
    jsDirectGetMsgOptions d;
    jsDirectGetMsgOptions_Init(&d);
    d.LastBySubject = subject.c_str();
    natsMsg* m = nullptr;
    s = js_DirectGetMsg(&m, js, stream.c_str(), &o, &d);
    if (m) natsMsg_Destroy(m);
    if (s == NATS_OK || s == NATS_NOT_FOUND) return NATS_OK;
    if (s != NATS_TIMEOUT && s != NATS_NO_RESPONDERS) return s;
    if (nowMs() >= until) return NATS_TIMEOUT;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

StoreReplicaStream::StoreReplicaStream(natsConnection* nc, std::string stream, std::string stream_subjects,
                                       std::string subject_prefix, int replicas, persistence::Store& store, uint64_t at_least, bool guard_empty,
                                       std::function<void()> moved)
    : nc_(nc),
      stream_(std::move(stream)),
      stream_subjects_(std::move(stream_subjects)),
      log_subject_(subject_prefix + "l"),
      snap_subject_(subject_prefix + "s"),
      end_subject_(subject_prefix + "e"),
      replicas_(replicas),
      store_(store),
      moved_(std::move(moved)),
      dropped_upto_(at_least),
      guard_empty_(guard_empty),
      run_(newRun()) {}

StoreReplicaStream::~StoreReplicaStream() { stop(); }

void StoreReplicaStream::start() { thread_ = std::thread([this] { run(); }); }

void StoreReplicaStream::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (js_) jsCtx_Destroy(js_);
  js_ = nullptr;
}

void StoreReplicaStream::add(uint64_t ticket, const persistence::Batch& batch) {
  bool wake = false, overflow = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) {
      dropped_upto_ = ticket;
      return;
    }
    if (queued_bytes_ + batch.ops().size() > kMaxQueuedBytes) {
      // JetStream does not keep up: a new snapshot will hold these.
      LOG_WARN("cluster: replica of the store: more than %zu MB wait to be stored in stream %s; it is not live "
               "until a new snapshot is stored", kMaxQueuedBytes >> 20, stream_.c_str());
      dropped_upto_ = ticket;
      queue_.clear();
      queued_bytes_ = 0;
      accepting_ = false;
      if (live_.exchange(false)) ++counters_.stalls;
      wake = true;
      overflow = true;
    } else {
      queue_.push_back({ticket, batch.ops()});
      queued_bytes_ += batch.ops().size();
      wake = queue_.size() == 1;
    }
  }
  if (wake) cv_.notify_all();
  if (overflow) moved_();  // what waited for the replica waits no more
}

uint64_t StoreReplicaStream::covered() const { return live_.load() ? covered_.load() : UINT64_MAX; }

void StoreReplicaStream::waitFor(uint64_t ticket, int ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return covered() >= ticket || !thread_.joinable(); });
}

StoreReplicaStream::Counters StoreReplicaStream::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  Counters c = counters_;
  c.live = live_.load();
  c.covered = covered_.load();
  return c;
}

void StoreReplicaStream::pause(int ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
}

bool StoreReplicaStream::open() {
  if (natsConnection_Status(nc_) != NATS_CONN_STATUS_CONNECTED) return false;
  natsStatus s = NATS_OK;
  if (!js_) {
    int st = NATS_OK;
    js_ = jetStreamOf(nc_, kWaitMs, st);
    s = static_cast<natsStatus>(st);
  }
  jsErrCode jerr = static_cast<jsErrCode>(0);
  if (s == NATS_OK) {
    const char* list[] = {stream_subjects_.c_str()};
    jsStreamConfig c;
    jsStreamConfig_Init(&c);
    c.Name = stream_.c_str();
    c.Description = "Petrel: each node's store (a snapshot and the log after it)";
    c.Subjects = list;
    c.SubjectsLen = 1;
    c.Retention = js_LimitsPolicy;
    c.Storage = js_FileStorage;
    c.Replicas = replicas_;
    c.AllowDirect = true;
    jsStreamInfo* si = nullptr;
    s = js_AddStream(&si, js_, &c, nullptr, &jerr);
    if (si) jsStreamInfo_Destroy(si);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) s = NATS_OK;  // made by another node: used as it is
  }
  if (s == NATS_OK) s = whenSetUp(js_, stream_, end_subject_);
  if (s == NATS_OK && guard_empty_) {
    natsMsg* m = nullptr;
    jsErrCode e = static_cast<jsErrCode>(0);
    const natsStatus g = js_GetLastMsg(&m, js_, stream_.c_str(), end_subject_.c_str(), nullptr, &e);
    if (m) natsMsg_Destroy(m);
    if (g == NATS_OK) {
      LOG_ERROR("cluster: stream %s holds a replica of this node's store, and this node started on an empty "
                "store without reading it back (NATS did not answer in time): it is left as it is, and this "
                "node keeps no replica. Restart the node to restore it; or, to start afresh, purge subject "
                "%s.* of that stream first.", stream_.c_str(), log_subject_.substr(0, log_subject_.size() - 2).c_str());
      std::lock_guard<std::mutex> lock(mu_);
      accepting_ = false;
      refused_ = true;
      return false;
    }
    if (g != NATS_NOT_FOUND) s = g;
    else guard_empty_ = false;
  }
  if (s != NATS_OK) {
    std::string e = "stream " + stream_ + ": " + natsErrorText(s);
    if (jerr) e += " (JetStream error " + std::to_string(int(jerr)) + ")";
    if (e != last_error_) {
      LOG_WARN("cluster: replica of the store: %s; acknowledgements follow this node's disk alone until it "
               "works (trying again every second)", e.c_str());
      last_error_ = e;
    }
    return false;
  }
  // Records fit the server's largest message.
  const int64_t max_payload = natsConnection_GetMaxPayload(nc_);
  if (max_payload > 0)
    record_bytes_ = std::max<size_t>(8192, std::min<size_t>(kRecordBytes, static_cast<size_t>(max_payload) - 1024));
  last_error_.clear();
  return true;
}

bool StoreReplicaStream::store(const std::string& subject, const std::string& body, uint64_t& seq) {
  const int64_t start = nowMs();
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = kWaitMs;
  while (true) {
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s =
        js_Publish(&pa, js_, subject.c_str(), body.data(), static_cast<int>(body.size()), &po, &jerr);
    if (s == NATS_OK && pa) {
      seq = pa->Sequence;
      jsPubAck_Destroy(pa);
      return true;
    }
    if (pa) jsPubAck_Destroy(pa);
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping = stopping_;
    }
    const int64_t waited = nowMs() - start;
    if (waited >= kStallMs || (stopping && waited >= kWaitMs)) {
      last_error_ = natsErrorText(s);
      if (jerr) last_error_ += " (JetStream error " + std::to_string(int(jerr)) + ")";
      return false;
    }
    if (!stopping) pause(200);
  }
}

void StoreReplicaStream::stall(const char* why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!queue_.empty()) dropped_upto_ = std::max(dropped_upto_, queue_.back().ticket);
    queue_.clear();
    queued_bytes_ = 0;
    accepting_ = false;
    if (live_.exchange(false)) ++counters_.stalls;
  }
  need_snapshot_ = true;
  LOG_WARN("cluster: replica of the store: %s in stream %s (%s); acknowledgements follow this node's disk "
           "alone until a new snapshot is stored", why, stream_.c_str(), last_error_.c_str());
  cv_.notify_all();
  moved_();
}

bool StoreReplicaStream::publishQueued() {
  std::deque<Pending> work;
  {
    std::lock_guard<std::mutex> lock(mu_);
    work.swap(queue_);
    queued_bytes_ = 0;
  }
  std::string rec;
  uint64_t complete = 0;   // the last batch whose final piece is in `rec`
  uint64_t touched = 0;    // the last batch with any piece in it
  bool any = false;
  auto flush = [&]() {
    if (!any) return true;
    uint64_t seq = 0;
    if (!store(log_subject_, rec, seq)) return false;
    log_.push_back({seq, touched, rec.size()});
    log_bytes_ += rec.size();
    if (complete) last_published_ = complete;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++counters_.records;
      counters_.log_bytes = log_bytes_;
    }
    if (live_.load() && complete) {
      covered_ = complete;
      cv_.notify_all();
      moved_();
    }
    any = false;
    complete = 0;
    return true;
  };
  for (size_t i = 0; i < work.size(); ++i) {
    const Pending& p = work[i];
    if (p.ticket <= skip_upto_) continue;
    size_t off = 0;
    do {
      if (!any) putHeader(rec, kLog, run_, gen_, 0);
      size_t room = record_bytes_ > rec.size() + kPieceOverhead ? record_bytes_ - rec.size() - kPieceOverhead : 0;
      if (room < 4096 && any) {
        if (!flush()) {
          std::lock_guard<std::mutex> lock(mu_);
          dropped_upto_ = std::max(dropped_upto_, work.back().ticket);
          break;
        }
        putHeader(rec, kLog, run_, gen_, 0);
        room = record_bytes_ - rec.size() - kPieceOverhead;
      }
      const size_t n = std::min(room, p.ops.size() - off);
      persistence::Out o{rec};
      o.u64(p.ticket);
      o.u32(static_cast<uint32_t>(off));
      o.u8(off + n < p.ops.size() ? 1 : 0);
      o.str(std::string_view(p.ops).substr(off, n));
      off += n;
      any = true;
      touched = p.ticket;
      if (off == p.ops.size()) complete = p.ticket;
    } while (off < p.ops.size());
    if (off < p.ops.size()) {  // a flush failed
      stall("storing the log stopped");
      return false;
    }
  }
  if (!flush()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!work.empty()) dropped_upto_ = std::max(dropped_upto_, work.back().ticket);
    }
    stall("storing the log stopped");
    return false;
  }
  if (!need_snapshot_ && log_bytes_ > std::max<uint64_t>(kMinLogBytes, 2 * snapshot_bytes_)) need_snapshot_ = true;
  return true;
}

void StoreReplicaStream::purge(const std::string& subject, uint64_t below) {
  // JetStream reads a bound of 0 or 1 as none (everything on the subject
  // would go); below 2 there is nothing to purge anyway.
  if (below <= 1) return;
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Purge.Subject = subject.c_str();
  o.Stream.Purge.Sequence = below;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const natsStatus s = js_PurgeStream(js_, stream_.c_str(), &o, &jerr);
  if (s != NATS_OK) {
    LOG_WARN("cluster: replica of the store: purging %s below %llu in stream %s: %s", subject.c_str(),
             static_cast<unsigned long long>(below), stream_.c_str(), natsErrorText(s).c_str());
    purge_failed_ = true;
  }
}

bool StoreReplicaStream::snapshot() {
  const bool fresh = !live_.load();
  uint64_t at_least = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    accepting_ = true;
    if (fresh) at_least = dropped_upto_;
  }
  std::unique_ptr<persistence::Snapshot> snap = store_.snapshot(at_least);
  if (!snap) return false;
  const uint64_t t = snap->ticket();
  if (fresh) {
    skip_upto_ = std::max(skip_upto_, t);
    last_published_ = std::max(last_published_, t);
  }
  ++gen_;
  uint64_t first_seq = 0, bytes = 0, parts = 0, seq = 0;
  persistence::Batch b;
  std::string rec;
  const size_t piece_max = record_bytes_ - kHeaderBytes - kPieceOverhead;
  while (true) {
    b.clear();
    if (!snap->next(b, piece_max)) break;
    // A record larger than a stream message (a large message) goes in pieces.
    const std::string& ops = b.ops();
    for (size_t off = 0; off < ops.size();) {
      const size_t n = std::min(piece_max, ops.size() - off);
      putHeader(rec, kPart, run_, gen_, t);
      persistence::Out o{rec};
      o.u32(static_cast<uint32_t>(off));
      o.u8(off + n < ops.size() ? 1 : 0);
      o.str(std::string_view(ops).substr(off, n));
      off += n;
      if (!store(snap_subject_, rec, seq)) {
        stall("storing a snapshot stopped");
        return false;
      }
      if (!first_seq) first_seq = seq;
      bytes += rec.size();
      ++parts;
    }
    // Acknowledgements keep moving during a long snapshot.
    if (!publishQueued()) return false;
  }
  if (!snap->error().empty()) {
    LOG_ERROR("cluster: replica of the store: %s; trying again in a minute", snap->error().c_str());
    snap.reset();
    pause(60 * 1000);
    return false;
  }
  snap.reset();  // its read transaction ends
  putHeader(rec, kEnd, run_, gen_, t);
  persistence::Out o{rec};
  o.u64(parts);
  o.u64(bytes);
  o.u64(first_seq);
  if (!store(end_subject_, rec, seq)) {
    stall("storing a snapshot stopped");
    return false;
  }
  const uint64_t end_seq = seq;
  // What the new snapshot makes unneeded: the older snapshots, and the log
  // up to its commit. The newest end names the snapshot a reader takes,
  // and the log after it is kept, so a purge that fails leaves the
  // replica whole.
  purge_failed_ = false;
  purge(end_subject_, end_seq);
  purge(snap_subject_, first_seq);
  if (!purge_failed_) {
    uint64_t keep_from = end_seq;
    for (const LogRecord& r : log_) {
      if (r.last_ticket > t) {
        keep_from = r.seq;
        break;
      }
    }
    purge(log_subject_, keep_from);
    if (!purge_failed_) {
      while (!log_.empty() && log_.front().seq < keep_from) {
        log_bytes_ -= log_.front().bytes;
        log_.pop_front();
      }
    }
  }
  snapshot_bytes_ = bytes;
  need_snapshot_ = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.snapshots;
    counters_.snapshot_bytes = bytes;
    counters_.log_bytes = log_bytes_;
  }
  if (fresh) {
    covered_ = last_published_;
    live_ = true;
    LOG_NOTICE("cluster: replica of the store live in stream %s (snapshot of %llu KB)", stream_.c_str(),
               static_cast<unsigned long long>(bytes >> 10));
    cv_.notify_all();
    moved_();
  }
  return true;
}

// Another node marked this node's replica as taken (adoption.h) while
// this node runs: it was cut off from the cluster long enough to be
// thought down, or started just before the mark. The sessions are on both
// nodes now; the mark goes (a later start of this node must not let go of
// what it holds then) and a new snapshot makes the replica whole again.
void StoreReplicaStream::checkMark() {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_mark_check_) return;
  next_mark_check_ = now + std::chrono::milliseconds(kMarkCheckMs);
  const std::string mark = log_subject_.substr(0, log_subject_.size() - 1) + "a";
  natsMsg* m = nullptr;
  jsErrCode e = static_cast<jsErrCode>(0);
  // A short wait: the log's publishing waits meanwhile (no answer now, a
  // leader being elected: looked at again next time).
  jsOptions wait;
  jsOptions_Init(&wait);
  wait.Wait = kMarkWaitMs;
  const natsStatus s = js_GetLastMsg(&m, js_, stream_.c_str(), mark.c_str(), &wait, &e);
  if (s != NATS_OK || !m) return;
  const std::string by(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
  natsMsg_Destroy(m);
  LOG_ERROR("cluster: node %s took this node's durable sessions while this node was running (cut off from the "
            "cluster, or started as it took them): both hold copies now; each client's session is the one on the "
            "node it connects to. This node's replica is written anew.", by.c_str());
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Purge.Subject = mark.c_str();
  jsErrCode jerr = static_cast<jsErrCode>(0);
  js_PurgeStream(js_, stream_.c_str(), &o, &jerr);
  std::lock_guard<std::mutex> lock(mu_);
  need_snapshot_ = true;
}

void StoreReplicaStream::run() {
  bool opened = false;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stopping_) break;
      if (opened && !need_snapshot_)
        cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_ || !queue_.empty(); });
      if (refused_) {
        cv_.wait(lock, [this] { return stopping_; });
        break;
      }
      // Batches were dropped (a stall, or too many waiting): only a new
      // snapshot covers them.
      if (!accepting_) need_snapshot_ = true;
    }
    if (!opened) {
      opened = open();
      if (!opened) {
        if (!refused_) pause(1000);
        continue;
      }
    }
    if (need_snapshot_) {
      if (!snapshot()) pause(1000);
      continue;
    }
    publishQueued();
    if (live_.load()) checkMark();
  }
  // Stopping: what waits is stored, for the node's next run or another
  // node reading the replica.
  if (opened && live_.load()) publishQueued();
}

namespace {

std::string_view dataOf(natsMsg* m) {
  return std::string_view(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
}

// The last stream message on `subject` (through the stream's leader);
// null with NATS_NOT_FOUND when there is none.
natsStatus lastOn(jsCtx* js, const std::string& stream, const std::string& subject, natsMsg** m) {
  jsErrCode e = static_cast<jsErrCode>(0);
  *m = nullptr;
  natsStatus s = whenSetUp(js, stream, subject);
  if (s == NATS_OK) s = js_GetLastMsg(m, js, stream.c_str(), subject.c_str(), nullptr, &e);
  if (s != NATS_OK && (e == JSNoMessageFoundErr || s == NATS_NOT_FOUND)) return NATS_NOT_FOUND;
  return s;
}

// Asks `ask` again, each `every` with a notice naming `what`, while
// JetStream leaves it unanswered (a server just lost, leaders being
// elected) and until `until`. Its answer: NATS_OK, NATS_NOT_FOUND, no
// JetStream at all (NATS_NO_RESPONDERS), or the last error.
natsStatus untilAnswered(const std::function<natsStatus()>& ask, const std::string& what,
                         std::chrono::steady_clock::time_point until, std::chrono::milliseconds every) {
  natsStatus s = NATS_OK;
  while ((s = ask()) != NATS_OK && s != NATS_NOT_FOUND && s != NATS_NO_RESPONDERS &&
         std::chrono::steady_clock::now() < until) {
    LOG_NOTICE("cluster: %s: %s; asking again, for up to %d s more", what.c_str(), natsErrorText(s).c_str(),
               static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(
                                    until - std::chrono::steady_clock::now()).count()));
    std::this_thread::sleep_for(every);
  }
  return s;
}

// Calls `f` with each stream message on `subject` from sequence `from`
// on, in order, up to the last one there now (an ordered consumer); `f`
// returns false to stop. False with `err` on a JetStream error, or when
// JetStream left it without an answer or a message for `patience_ms`.
bool readSubject(jsCtx* js, const std::string& stream, const std::string& subject, uint64_t from, int patience_ms,
                 const std::function<bool(natsMsg*, uint64_t seq)>& f, std::string& err) {
  natsMsg* last = nullptr;
  // Where the records end, through the stream's leader.
  natsStatus s = untilAnswered([&] { return lastOn(js, stream, subject, &last); },
                               "where " + subject + " ends in stream " + stream,
                               std::chrono::steady_clock::now() + std::chrono::milliseconds(patience_ms),
                               std::chrono::milliseconds(500));
  if (s == NATS_NOT_FOUND) return true;
  if (s != NATS_OK) {
    err = "reading " + subject + " in stream " + stream + ": " + natsErrorText(s);
    return false;
  }
  const uint64_t last_seq = natsMsg_GetSequence(last);
  natsMsg_Destroy(last);
  uint64_t next = std::max<uint64_t>(from, 1);
  // A consumer that cannot be made or stops delivering (its server went,
  // JetStream electing a leader: after a server is lost that took up to
  // 15 s with nats-server 2.9) is made again from where it stopped, until
  // nothing has come for `patience_ms`.
  auto progress = std::chrono::steady_clock::now();
  for (int attempt = 0; next <= last_seq; ++attempt) {
    if (attempt && std::chrono::steady_clock::now() - progress >= std::chrono::milliseconds(patience_ms)) {
      err = "reading " + subject + " in stream " + stream + ": " + natsErrorText(s) + " (" +
            std::to_string(attempt) + " attempts, nothing read for " + std::to_string(patience_ms / 1000) + " s)";
      return false;
    }
    if (attempt) {
      // A wait an operator can see: JetStream may need seconds for this.
      LOG_NOTICE("cluster: reading %s in stream %s: %s; asking again from sequence %s, until nothing has "
                 "come for %d s",
                 subject.c_str(), stream.c_str(), natsErrorText(s).c_str(), std::to_string(next).c_str(),
                 patience_ms / 1000);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = next;
    natsSubscription* sub = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_SubscribeSync(&sub, js, subject.c_str(), nullptr, &so, &jerr);
    bool stop = false;
    while (s == NATS_OK && next <= last_seq) {
      natsMsg* m = nullptr;
      s = natsSubscription_NextMsg(&m, sub, StoreReplicaStream::kWaitMs * 2);
      if (s != NATS_OK) break;
      jsMsgMetaData* meta = nullptr;
      uint64_t seq = 0;
      if (natsMsg_GetMetaData(&meta, m) == NATS_OK && meta) {
        seq = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
      }
      if (seq < next) {  // delivered again by a consumer made again
        natsMsg_Destroy(m);
        continue;
      }
      stop = !f(m, seq);
      natsMsg_Destroy(m);
      next = seq + 1;
      progress = std::chrono::steady_clock::now();
      if (stop) break;
    }
    if (sub) {
      natsSubscription_Unsubscribe(sub);
      natsSubscription_Destroy(sub);
    }
    if (stop) return true;
  }
  return true;
}

}  // namespace

bool restoreReplica(jsCtx* js, const std::string& stream, const std::string& subject_prefix,
                    persistence::Store& store, RestoreReport& r, std::string& err, int patience_ms) {
  const std::string snap_subject = subject_prefix + "s", end_subject = subject_prefix + "e",
                    log_subject = subject_prefix + "l";
  // The newest complete snapshot: its end says where its records start.
  natsMsg* end = nullptr;
  natsStatus s = lastOn(js, stream, end_subject, &end);
  if (s == NATS_NOT_FOUND) return true;
  if (s != NATS_OK) {
    err = "reading " + end_subject + " in stream " + stream + ": " + natsErrorText(s);
    r.unanswered = true;
    return false;
  }
  Header h;
  uint64_t parts = 0, first_seq = 0;
  {
    persistence::In in{dataOf(end)};
    const bool ok = readHeader(in, h) && h.kind == kEnd;
    parts = in.fixed<uint64_t>();
    in.fixed<uint64_t>();
    first_seq = in.fixed<uint64_t>();
    natsMsg_Destroy(end);
    if (!ok || !in.ok) {
      err = "stream " + stream + ": the last record of " + end_subject + " is not a Petrel replica record";
      return false;
    }
  }
  if (h.schema != persistence::Store::kSchemaVersion) {
    err = "stream " + stream + ": the replica was written by a Petrel with store schema " +
          std::to_string(h.schema) + ", this one writes " + std::to_string(persistence::Store::kSchemaVersion);
    return false;
  }
  r.found = true;
  r.run = h.run;
  r.gen = h.gen;
  r.ticket = h.ticket;
  std::string ops;  // an op log in pieces
  std::string bad;
  bool ok = readSubject(js, stream, snap_subject, first_seq, patience_ms, [&](natsMsg* m, uint64_t at) {
    persistence::In in{dataOf(m)};
    Header ph;
    if (!readHeader(in, ph) || ph.kind != kPart) {
      bad = "record " + std::to_string(at) + " of " + snap_subject + " is not a Petrel replica record";
      return false;
    }
    if (ph.run != h.run || ph.gen != h.gen) return r.parts < parts;  // another snapshot's
    const uint32_t off = in.fixed<uint32_t>();
    const bool more = in.u8() != 0;
    const std::string_view piece = in.view();
    // A piece stored twice (published again after no answer) is taken
    // once; a whole record again only puts the same records again.
    if (!in.ok || off > ops.size()) {
      bad = "record " + std::to_string(at) + " of " + snap_subject + " is damaged or out of place";
      return false;
    }
    r.bytes += piece.size();
    ++r.parts;
    if (off < ops.size()) return r.parts < parts;
    ops.append(piece);
    if (!more) {
      store.batch().appendOps(ops);
      store.submit();
      ops.clear();
    }
    return r.parts < parts;
  }, err);
  if (ok && bad.empty() && r.parts < parts) bad = "the snapshot ends before its last record (" + std::to_string(r.parts) +
                                                  " of " + std::to_string(parts) + ")";
  // The log of that run after the snapshot's commit, in ticket order.
  uint64_t last = h.ticket;
  std::string partial;
  uint64_t partial_ticket = 0;
  if (ok && bad.empty()) ok = readSubject(js, stream, log_subject, 1, patience_ms, [&](natsMsg* m, uint64_t at) {
    r.bytes += static_cast<uint64_t>(natsMsg_GetDataLength(m));
    persistence::In in{dataOf(m)};
    Header lh;
    if (!readHeader(in, lh) || lh.kind != kLog) {
      bad = "record " + std::to_string(at) + " of " + log_subject + " is not a Petrel replica log record";
      return false;
    }
    if (lh.run != h.run) return true;
    while (!in.atEnd() && in.ok) {
      const uint64_t ticket = in.fixed<uint64_t>();
      const uint32_t off = in.fixed<uint32_t>();
      const bool more = in.u8() != 0;
      const std::string_view piece = in.view();
      if (!in.ok) break;
      if (ticket <= last) continue;  // in the snapshot, or stored twice
      if (ticket != last + 1) {      // a batch never stored: nothing after it was acknowledged
        r.hole = true;
        return false;
      }
      if (partial_ticket != ticket) {
        partial.clear();
        partial_ticket = ticket;
      }
      if (off < partial.size()) continue;  // this piece again
      if (off > partial.size()) {
        r.hole = true;
        return false;
      }
      partial.append(piece);
      if (more) continue;
      store.batch().appendOps(partial);
      store.submit();
      ++r.batches;
      last = ticket;
      partial.clear();
      partial_ticket = 0;
    }
    if (!in.ok) {
      bad = "record " + std::to_string(at) + " of " + log_subject + " is damaged";
      return false;
    }
    return true;
  }, err);
  store.drain();
  r.unanswered = !ok;  // readSubject's false: JetStream did not answer
  if (!bad.empty()) err = "stream " + stream + ": " + bad;
  return ok && bad.empty();
}

// A connection of its own at start-up, waiting up to `wait_ms`: false
// with `err` on options NATS refuses; `*nc` null (with `err`) when no
// server answered.
bool connectAtStart(const ClusterConfig& cfg, const std::string& what, int wait_ms, natsConnection** nc,
                    std::string& err) {
  *nc = nullptr;
  natsOptions* opts = natsOptionsFor(cfg, "petrel " + what, err);
  if (!opts) return false;
  natsOptions_SetTimeout(opts, wait_ms);
  const natsStatus s = natsConnection_Connect(nc, opts);
  natsOptions_Destroy(opts);
  if (s != NATS_OK) {
    *nc = nullptr;
    err = "no NATS server answered within " + std::to_string(wait_ms / 1000) + " s (" + natsErrorText(s) + ")";
  }
  return true;
}

bool restoreAtStart(const ClusterConfig& cfg, persistence::Store& store, int wait_ms, bool& checked,
                    RestoreReport& report, std::string& err) {
  checked = false;
  const std::string node = nodeName(cfg);
  natsConnection* nc = nullptr;
  natsStatus s = NATS_OK;
  if (!connectAtStart(cfg, node + " (restoring its store)", wait_ms, &nc, err)) return false;
  if (!nc) return true;  // not checked
  int st = NATS_OK;
  jsCtx* js = jetStreamOf(nc, StoreReplicaStream::kWaitMs, st);
  s = static_cast<natsStatus>(st);
  bool ok = true;
  if (s == NATS_OK) {
    const std::string stream = cfg.name + "_replica";
    std::string token;
    encodeLevel(node, token);
    // NATS answered, but JetStream may not yet, for the stream or for the
    // reads (a server just lost, leaders being elected): asked again,
    // while nothing has been read, for up to kStartPatienceMs.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kStartPatienceMs);
    while (true) {
      jsStreamInfo* si = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      s = js_GetStreamInfo(&si, js, stream.c_str(), nullptr, &jerr);
      if (si) jsStreamInfo_Destroy(si);
      if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
        checked = true;  // no replica of any node yet
        break;
      }
      if (s == NATS_OK) {
        report = RestoreReport{};
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        ok = restoreReplica(js, stream, cfg.name + ".r." + token + ".", store, report, err,
                            static_cast<int>(std::clamp<int64_t>(left.count(), 1000, kReadPatienceMs)));
        checked = ok;
        if (ok || report.parts || report.batches) break;  // read, or partly read (then the node does not start)
        if (!report.unanswered) {  // nothing read, a replica it cannot read: starts without it
          ok = true;
          break;
        }
      } else {
        err = "stream " + stream + ": " + natsErrorText(s);
      }
      // Nothing read. No JetStream at all, or all this time without an
      // answer: the node starts as when NATS is away.
      ok = true;
      if (s == NATS_NO_RESPONDERS || std::chrono::steady_clock::now() >= deadline) break;
      LOG_NOTICE("cluster: this node's replica could not be read yet (%s); asking again, for up to %d s in all",
                 err.c_str(), kStartPatienceMs / 1000);
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  } else {
    err = "JetStream: " + natsErrorText(s);
  }
  if (js) jsCtx_Destroy(js);
  natsConnection_Close(nc);
  natsConnection_Destroy(nc);
  return ok;
}

}  // namespace petrel::cluster

namespace petrel::cluster {

namespace {

// Everything on `subject` in `stream` goes (JetStream's purge by subject).
natsStatus purgeSubject(jsCtx* js, const std::string& stream, const std::string& subject) {
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Purge.Subject = subject.c_str();
  jsErrCode jerr = static_cast<jsErrCode>(0);
  return js_PurgeStream(js, stream.c_str(), &o, &jerr);
}

}  // namespace

bool markAdopted(jsCtx* js, const std::string& stream, const std::string& prefix, const std::string& by,
                 std::string& err) {
  const std::string mark = prefix + "a";
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_Publish(nullptr, js, mark.c_str(), by.data(), static_cast<int>(by.size()), nullptr, &jerr);
  if (s != NATS_OK) {
    err = "storing the mark on " + mark + " in stream " + stream + ": " + natsErrorText(s);
    return false;
  }
  for (const char* part : {"e", "s", "l"}) {
    const std::string subject = prefix + part;
    s = purgeSubject(js, stream, subject);
    if (s != NATS_OK) {
      err = "purging " + subject + " in stream " + stream + ": " + natsErrorText(s);
      return false;
    }
  }
  return true;
}

bool adoptedAtStart(const ClusterConfig& cfg, int wait_ms, const std::function<bool()>& let_go, bool& checked,
                    std::string& by, std::string& err) {
  checked = false;
  by.clear();
  const std::string node = nodeName(cfg);
  natsConnection* nc = nullptr;
  natsStatus s = NATS_OK;
  if (!connectAtStart(cfg, node + " (checking its sessions)", wait_ms, &nc, err)) return false;
  if (!nc) return true;  // not checked
  int st = NATS_OK;
  jsCtx* js = jetStreamOf(nc, StoreReplicaStream::kWaitMs, st);
  bool ok = true;
  if (js) {
    std::string token;
    encodeLevel(node, token);
    const std::string stream = cfg.name + "_replica";
    const std::string mark = cfg.name + ".r." + token + ".a";
    natsMsg* m = nullptr;
    // NATS answered, but JetStream may not yet (a server just lost,
    // leaders being elected): asked again for up to kStartPatienceMs, since
    // serving sessions another node took would deliver their messages
    // twice.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kStartPatienceMs);
    s = untilAnswered([&] { return lastOn(js, stream, mark, &m); },
                      "whether another node took this node's sessions (" + mark + " in stream " + stream + ")",
                      deadline, std::chrono::seconds(1));
    if (s == NATS_OK) {
      by.assign(dataOf(m));
      natsMsg_Destroy(m);
      checked = true;
      // The store lets go of what the other node took, then the mark goes.
      if (!let_go()) {
        err = "the store could not let go of the sessions another node took";
        ok = false;
      } else {
        // Read through any server that has the stream (direct gets), the
        // mark is purged through its leader, which may not be elected yet.
        s = untilAnswered([&] { return purgeSubject(js, stream, mark); },
                          "removing " + mark + " in stream " + stream, deadline, std::chrono::seconds(1));
        if (s != NATS_OK) {
          err = "purging " + mark + " in stream " + stream + ": " + natsErrorText(s);
          ok = false;
        }
      }
    } else if (s == NATS_NOT_FOUND) {
      checked = true;
    } else {
      jsStreamInfo* si = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      if (js_GetStreamInfo(&si, js, stream.c_str(), nullptr, &jerr) == NATS_NOT_FOUND ||
          jerr == JSStreamNotFoundErr)
        checked = true;  // no replica of any node yet
      else
        err = "stream " + stream + ": " + natsErrorText(s);
      if (si) jsStreamInfo_Destroy(si);
    }
    jsCtx_Destroy(js);
  } else {
    err = "JetStream: " + natsErrorText(st);
  }
  natsConnection_Close(nc);
  natsConnection_Destroy(nc);
  return ok;
}

}  // namespace petrel::cluster
