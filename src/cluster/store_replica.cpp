#include "src/cluster/store_replica.h"

#include <nats/nats.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <random>

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
//   'S' (snapshot): an op log of Batch::putRaw records.
//   'E' (end):      the snapshot's record count and bytes; it is complete.
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

}  // namespace

StoreReplicaStream::StoreReplicaStream(natsConnection* nc, std::string stream, std::string stream_subjects,
                                       std::string subject_prefix, int replicas, persistence::Store& store, uint64_t at_least, bool guard_empty,
                                       std::function<void()> moved)
    : nc_(nc),
      stream_(std::move(stream)),
      stream_subjects_(std::move(stream_subjects)),
      log_subject_(subject_prefix + "l"),
      snap_subject_(subject_prefix + "s"),
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
  bool wake = false;
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
    } else {
      queue_.push_back({ticket, batch.ops()});
      queued_bytes_ += batch.ops().size();
      wake = queue_.size() == 1;
    }
  }
  if (wake) cv_.notify_all();
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
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = kWaitMs;
    s = natsConnection_JetStream(&js_, nc_, &o);
    if (s != NATS_OK) js_ = nullptr;
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
  if (s == NATS_OK && guard_empty_) {
    natsMsg* m = nullptr;
    jsErrCode e = static_cast<jsErrCode>(0);
    const natsStatus g = js_GetLastMsg(&m, js_, stream_.c_str(), snap_subject_.c_str(), nullptr, &e);
    if (m) natsMsg_Destroy(m);
    if (g == NATS_OK) {
      LOG_ERROR("cluster: stream %s holds a replica of this node's store, and this node started on an empty "
                "store without reading it back (NATS did not answer in time): it is left as it is, and this "
                "node keeps no replica. Restart the node to restore it; or, to start afresh, purge subject "
                "%s and %s of that stream first.", stream_.c_str(), snap_subject_.c_str(), log_subject_.c_str());
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
      size_t room = kRecordBytes > rec.size() + kPieceOverhead ? kRecordBytes - rec.size() - kPieceOverhead : 0;
      if (room < 4096 && any) {
        if (!flush()) {
          std::lock_guard<std::mutex> lock(mu_);
          dropped_upto_ = std::max(dropped_upto_, work.back().ticket);
          break;
        }
        putHeader(rec, kLog, run_, gen_, 0);
        room = kRecordBytes - rec.size() - kPieceOverhead;
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
  while (true) {
    b.clear();
    if (!snap->next(b, kRecordBytes - kHeaderBytes - 1024)) break;
    putHeader(rec, kPart, run_, gen_, t);
    rec.append(b.ops());
    if (!store(snap_subject_, rec, seq)) {
      stall("storing a snapshot stopped");
      return false;
    }
    if (!first_seq) first_seq = seq;
    bytes += rec.size();
    ++parts;
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
  if (!store(snap_subject_, rec, seq)) {
    stall("storing a snapshot stopped");
    return false;
  }
  const uint64_t end_seq = seq;
  if (!first_seq) first_seq = end_seq;
  // What the new snapshot makes unneeded: older snapshots first, then the
  // log up to its commit (so that a failure leaves a complete chain).
  purge_failed_ = false;
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
  }
  // Stopping: what waits is stored, for the node's next run or another
  // node reading the replica.
  if (opened && live_.load()) publishQueued();
}

namespace {

// The stream message after `seq` (inclusive) on `subject`; null at the end.
natsStatus nextOn(jsCtx* js, const std::string& stream, const std::string& subject, uint64_t seq, natsMsg** out,
                  uint64_t& found_seq) {
  jsDirectGetMsgOptions o;
  jsDirectGetMsgOptions_Init(&o);
  o.Sequence = seq;
  o.NextBySubject = subject.c_str();
  *out = nullptr;
  natsStatus s = js_DirectGetMsg(out, js, stream.c_str(), nullptr, &o);
  if (s != NATS_OK) return s;
  const char* v = nullptr;
  if (natsMsgHeader_Get(*out, "Nats-Sequence", &v) != NATS_OK || !v) {
    natsMsg_Destroy(*out);
    *out = nullptr;
    return NATS_ERR;
  }
  found_seq = std::strtoull(v, nullptr, 10);
  return NATS_OK;
}

std::string_view dataOf(natsMsg* m) {
  return std::string_view(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
}

}  // namespace

bool restoreReplica(jsCtx* js, const std::string& stream, const std::string& subject_prefix,
                    persistence::Store& store, RestoreReport& r, std::string& err) {
  const std::string snap_subject = subject_prefix + "s", log_subject = subject_prefix + "l";
  // The newest complete snapshot, and where its records are.
  struct Gen {
    std::vector<uint64_t> seqs;
    uint64_t ticket = 0;
    bool complete = false;
  };
  std::map<std::pair<uint64_t, uint32_t>, Gen> gens;
  std::pair<uint64_t, uint32_t> newest{0, 0};
  bool have = false;
  uint64_t seq = 1, at = 0;
  while (true) {
    natsMsg* m = nullptr;
    const natsStatus s = nextOn(js, stream, snap_subject, seq, &m, at);
    if (s == NATS_NOT_FOUND) break;
    if (s != NATS_OK) {
      err = "reading " + snap_subject + " in stream " + stream + ": " + natsErrorText(s);
      return false;
    }
    persistence::In in{dataOf(m)};
    Header h;
    if (!readHeader(in, h)) {
      natsMsg_Destroy(m);
      err = "stream " + stream + ": record " + std::to_string(at) + " of " + snap_subject + " is not a Petrel replica record";
      return false;
    }
    Gen& g = gens[{h.run, h.gen}];
    g.ticket = h.ticket;
    if (h.kind == kPart) g.seqs.push_back(at);
    if (h.kind == kEnd) {
      if (h.schema != persistence::Store::kSchemaVersion) {
        natsMsg_Destroy(m);
        err = "stream " + stream + ": the replica was written by a Petrel with store schema " + std::to_string(h.schema) +
              ", this one writes " + std::to_string(persistence::Store::kSchemaVersion);
        return false;
      }
      g.complete = true;
      newest = {h.run, h.gen};
      have = true;
    }
    r.bytes += static_cast<uint64_t>(natsMsg_GetDataLength(m));
    natsMsg_Destroy(m);
    seq = at + 1;
  }
  if (!have) return true;
  r.found = true;
  r.run = newest.first;
  r.gen = newest.second;
  const Gen& g = gens[newest];
  r.ticket = g.ticket;
  for (uint64_t s_at : g.seqs) {
    natsMsg* m = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s = js_GetMsg(&m, js, stream.c_str(), s_at, nullptr, &jerr);
    if (s != NATS_OK) {
      err = "reading record " + std::to_string(s_at) + " of stream " + stream + ": " + natsErrorText(s);
      return false;
    }
    persistence::In in{dataOf(m)};
    Header h;
    readHeader(in, h);
    store.batch().appendOps(dataOf(m).substr(in.p));
    store.submit();
    ++r.parts;
    natsMsg_Destroy(m);
  }
  // The log of that run after the snapshot's commit, in ticket order.
  uint64_t last = g.ticket;
  std::string partial;
  uint64_t partial_ticket = 0;
  seq = 1;
  bool stop = false;
  while (!stop) {
    natsMsg* m = nullptr;
    const natsStatus s = nextOn(js, stream, log_subject, seq, &m, at);
    if (s == NATS_NOT_FOUND) break;
    if (s != NATS_OK) {
      err = "reading " + log_subject + " in stream " + stream + ": " + natsErrorText(s);
      return false;
    }
    seq = at + 1;
    r.bytes += static_cast<uint64_t>(natsMsg_GetDataLength(m));
    persistence::In in{dataOf(m)};
    Header h;
    if (!readHeader(in, h) || h.kind != kLog) {
      natsMsg_Destroy(m);
      err = "stream " + stream + ": record " + std::to_string(at) + " of " + log_subject + " is not a Petrel replica log record";
      return false;
    }
    if (h.run != r.run) {
      natsMsg_Destroy(m);
      continue;
    }
    while (!in.atEnd() && in.ok) {
      const uint64_t ticket = in.fixed<uint64_t>();
      const uint32_t off = in.fixed<uint32_t>();
      const bool more = in.u8() != 0;
      const std::string_view piece = in.view();
      if (!in.ok) break;
      if (ticket <= last) continue;  // in the snapshot, or stored twice
      if (ticket != last + 1) {      // a batch never stored: nothing after it was acknowledged
        r.hole = true;
        stop = true;
        break;
      }
      if (partial_ticket != ticket) {
        partial.clear();
        partial_ticket = ticket;
      }
      if (off < partial.size()) continue;  // this piece again
      if (off > partial.size()) {
        r.hole = true;
        stop = true;
        break;
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
    const bool bad = !in.ok;
    natsMsg_Destroy(m);
    if (bad) {
      err = "stream " + stream + ": record " + std::to_string(at) + " of " + log_subject + " is damaged";
      return false;
    }
  }
  store.drain();
  return true;
}

bool restoreAtStart(const ClusterConfig& cfg, persistence::Store& store, int wait_ms, bool& checked,
                    RestoreReport& report, std::string& err) {
  checked = false;
  const std::string node = nodeName(cfg);
  natsOptions* opts = natsOptionsFor(cfg, "petrel " + node + " (restoring its store)", err);
  if (!opts) return false;
  natsOptions_SetTimeout(opts, wait_ms);
  natsConnection* nc = nullptr;
  natsStatus s = natsConnection_Connect(&nc, opts);
  natsOptions_Destroy(opts);
  if (s != NATS_OK) return true;  // not checked
  jsCtx* js = nullptr;
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = StoreReplicaStream::kWaitMs;
  s = natsConnection_JetStream(&js, nc, &o);
  bool ok = true;
  if (s == NATS_OK) {
    const std::string stream = cfg.name + "_replica";
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_GetStreamInfo(&si, js, stream.c_str(), nullptr, &jerr);
    if (si) jsStreamInfo_Destroy(si);
    if (s == NATS_OK) {
      std::string token;
      encodeLevel(node, token);
      ok = restoreReplica(js, stream, cfg.name + ".r." + token + ".", store, report, err);
      checked = ok;
    } else if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
      checked = true;  // no replica of any node yet
    }
  }
  if (js) jsCtx_Destroy(js);
  natsConnection_Close(nc);
  natsConnection_Destroy(nc);
  return ok;
}

}  // namespace petrel::cluster
