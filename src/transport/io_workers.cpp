// src/transport/io_workers.cpp — worker loops (see io_workers.h): the worker
// side of a connection (WorkerConn), its main-loop stand-in (RemoteStream),
// and the hand-over of commands and events between the loops.
#include "src/transport/io_workers.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "src/transport/tcp_stream.h"
#include "src/transport/tls_stream.h"
#include "src/transport/websocket_stream.h"
#include "src/util/check.h"
#include "src/util/cgroup_limits.h"
#include "src/util/log.h"

namespace petrel {

std::unique_ptr<Stream> makeServerLayers(Stream& tcp, const tls::TlsContext* tls, const WebSocketConfig* ws) {
  std::unique_ptr<Stream> top;
  if (tls) top = std::make_unique<TlsStream>(tcp, *tls);
  // On wss the WebSocket layer owns the TLS layer under it.
  if (ws) {
    Stream& below = top ? *top : tcp;
    top = std::make_unique<WebSocketStream>(below, *ws, std::move(top));
  }
  return top;
}

// The worker side of a connection: the real stream stack, and what its
// Connection does on the main loop for output (one write per turn, the
// half-close once everything is out), reduced to passing bytes and events.
// Built on the main loop (the TLS session is made there, from the listener's
// context, which a reload may replace), started and used on the worker loop.
class WorkerConn final : private StreamHandler {
 public:
  WorkerConn(RemoteStream* owner, const tls::TlsContext* tls, const WebSocketConfig* ws)
      : owner_(owner), layer_(makeServerLayers(tcp_, tls, ws)), tls_reported_(tls == nullptr) {
    top().setHandler(this);
  }

  // `packet_id` goes at `id_at` of the bytes (0: none).
  void write(const char* data, size_t len, uint32_t id_at = 0, uint16_t packet_id = 0) {
    received_ += len;
    const size_t base = out_.size();
    out_.append(data, len);
    if (id_at) {
      out_[base + id_at] = static_cast<char>(packet_id >> 8);
      out_[base + id_at + 1] = static_cast<char>(packet_id & 0xFF);
    }
    markDirty();
  }

  void run(IoCommand& c) {
    switch (c.kind) {
      case IoCommand::Kind::Write:
        break;  // IoWorker::onCommands: write()
      case IoCommand::Kind::Shutdown:
        shutdown_pending_ = true;
        markDirty();
        break;
      case IoCommand::Kind::WindDown:
        // A layer may have a last word of its own (a WebSocket close frame),
        // sent by the next write.
        top().windDown();
        markDirty();
        break;
      case IoCommand::Kind::PauseReading:
        paused_by_owner_ = true;
        tcp_.pauseReading();
        break;
      case IoCommand::Kind::ResumeReading:
        paused_by_owner_ = false;
        if (!w_->readingPaused()) tcp_.resumeReading();
        break;
      case IoCommand::Kind::Close:
        closed_ = true;
        top().close();  // onStreamClosed() follows
        break;
      case IoCommand::Kind::Sync:
        // Its Data events, then Synced: the main loop sees them in order.
        if (!closed_) tcp_.readNow();
        post(IoEvent::Kind::Synced);
        break;
      case IoCommand::Kind::Lane:
        // The last event in the old lane; the main loop handles what comes
        // in the new one after it.
        post(IoEvent::Kind::Lane, c.urgent);
        urgent_ = c.urgent;
        break;
      case IoCommand::Kind::Start:
      case IoCommand::Kind::Resume:
      case IoCommand::Kind::Stop:
        break;
    }
  }

  // The loop stops or resumes reading all its sockets (flow control).
  void loopReading(bool on) {
    if (paused_by_owner_ || closed_) return;
    if (on) tcp_.resumeReading();
    else tcp_.pauseReading();
  }
  size_t slot = 0;  // in the loop's list of connections

  void start(IoWorker& w, int fd) {
    w_ = &w;
    w.added(this);
    if (tcp_.adopt(w.loop(), fd) != 0) post(IoEvent::Kind::End, static_cast<uint8_t>(StreamEnd::PeerClosed));
  }

  void flush() {
    dirty_ = false;
    if (closed_) return;
    const Stream::Write w = top().write(out_);
    if (w == Stream::Write::Failed) {
      out_.clear();
      post(IoEvent::Kind::WriteFailed);
      return;
    }
    if (w != Stream::Write::InFlight && shutdown_pending_) {
      shutdown_pending_ = false;
      if (!top().shutdown()) post(IoEvent::Kind::End, static_cast<uint8_t>(StreamEnd::PeerClosed));
    }
    reportWritten();
  }

 private:
  Stream& top() { return layer_ ? *layer_ : static_cast<Stream&>(tcp_); }

  IoEvent& post(IoEvent::Kind k, uint8_t detail = 0) {
    IoEvent e;
    e.kind = k;
    e.detail = detail;
    e.stream = owner_;
    auto& events = w_->batch(urgent_).events;
    events.push_back(e);
    return events.back();
  }
  void postBytes(IoEvent::Kind k, uint8_t detail, const void* data, size_t len) {
    std::string& bytes = w_->batch(urgent_).bytes;
    IoEvent& e = post(k, detail);
    e.off = static_cast<uint32_t>(bytes.size());
    e.len = static_cast<uint32_t>(len);
    bytes.append(static_cast<const char*>(data), len);
  }

  void markDirty() {
    if (dirty_) return;
    dirty_ = true;
    w_->scheduleFlush(this);
  }

  // Tells the main loop how much of its output the kernel has taken: all of
  // it once nothing waits here or in the stack, otherwise a lower bound (a
  // TLS layer counts its pending bytes as ciphertext).
  void reportWritten() {
    const size_t pending = out_.size() + top().pendingBytes();
    uint64_t taken = pending == 0 ? received_ : (received_ > pending ? received_ - pending : 0);
    if (taken <= reported_) return;
    reported_ = taken;
    post(IoEvent::Kind::Written).n = taken;
  }

  void checkHandshake() {
    if (all_reported_) return;
    if (!tls_reported_) {
      tls::TlsSession* t = top().tlsSession();
      if (t && t->handshakeDone()) {
        tls_reported_ = true;
        if (t->hasPeerCommonName())
          postBytes(IoEvent::Kind::Handshake, 0, t->peerCommonName().data(), t->peerCommonName().size());
        else
          post(IoEvent::Kind::Handshake, 0);
      }
    }
    if (top().handshakeDone()) {
      all_reported_ = true;
      post(IoEvent::Kind::Handshake, 1);
    }
  }

  // StreamHandler.
  uint8_t* readBuffer(size_t& len, bool) override { return w_->readBuffer(len); }
  bool onStreamData(const uint8_t* data, size_t len) override {
    checkHandshake();
    postBytes(IoEvent::Kind::Data, 0, data, len);
    return true;
  }
  void onStreamActivity() override {
    checkHandshake();
    auto& events = w_->batch(urgent_).events;
    // One per connection and turn is enough: it only says "alive".
    if (!events.empty() && events.back().stream == owner_ && events.back().kind == IoEvent::Kind::Activity) return;
    post(IoEvent::Kind::Activity);
  }
  void onStreamInputDone() override {
    if (urgent_) w_->postUrgent();
  }
  void onStreamOutput() override { markDirty(); }
  void onStreamWritable(bool ok) override {
    if (closed_) return;
    if (!ok) {
      post(IoEvent::Kind::WriteFailed);
      return;
    }
    flush();
  }
  void onStreamEnd(StreamEnd why) override { post(IoEvent::Kind::End, static_cast<uint8_t>(why)); }
  void onStreamClosed() override {
    post(IoEvent::Kind::Closed);
    w_->connectionGone(this);  // deletes this
  }

  RemoteStream* const owner_;
  IoWorker* w_ = nullptr;
  TcpStream tcp_;
  std::unique_ptr<Stream> layer_;
  std::string out_;         // from the main loop, not yet taken by the stack
  uint64_t received_ = 0;   // bytes from the main loop, all told
  uint64_t reported_ = 0;   // of those, reported as taken by the kernel
  bool tls_reported_;
  bool all_reported_ = false;
  bool dirty_ = false;
  bool paused_by_owner_ = false;  // PauseReading (the CONNECT's password check)
  bool shutdown_pending_ = false;
  bool closed_ = false;
  bool urgent_ = false;  // its events go in the urgent lane (Lane)
};

// ---- RemoteStream (main loop) ----

RemoteStream::RemoteStream(IoWorker& w, int fd, const tls::TlsContext* tls, const WebSocketConfig* ws)
    : worker_(w),
      remote_(new WorkerConn(this, tls, ws)),
      fd_(fd),
      tls_done_(tls == nullptr),
      all_done_(tls == nullptr && ws == nullptr) {
  IoCommand c;
  c.kind = IoCommand::Kind::Start;
  c.conn = remote_;
  c.fd = fd;
  worker_.command(std::move(c));
  worker_.all().connectionStarted(worker_);
}

RemoteStream::~RemoteStream() {
  if (want_urgent_) worker_.all().releaseUrgent();
}

void RemoteStream::setUrgent(bool on) {
  if (on == want_urgent_ || closed_) return;
  if (on && !worker_.all().takeUrgent()) return;
  if (!on) worker_.all().releaseUrgent();
  want_urgent_ = on;
  IoCommand c;
  c.kind = IoCommand::Kind::Lane;
  c.conn = remote_;
  c.urgent = on;
  worker_.command(std::move(c));
}

void RemoteStream::receive(const IoEvent& e, const std::string& bytes, bool urgent_lane) {
  if (urgent_lane != lane_urgent_) {
    // Ahead of the Lane event that ends the other lane: kept until then.
    Deferred d{e, urgent_lane};
    if (e.len) {
      d.e.off = static_cast<uint32_t>(deferred_bytes_.size());
      deferred_bytes_.append(bytes, e.off, e.len);
    }
    deferred_.push_back(d);
    return;
  }
  if (e.kind != IoEvent::Kind::Lane) {
    onEvent(e, bytes);  // after Closed, this is gone
    return;
  }
  lane_urgent_ = e.detail != 0;
  if (deferred_.empty()) return;
  std::vector<Deferred> held;
  std::string held_bytes;
  held.swap(deferred_);
  held_bytes.swap(deferred_bytes_);
  for (const Deferred& d : held) {
    const bool last = d.e.kind == IoEvent::Kind::Closed;
    receive(d.e, held_bytes, d.urgent_lane);
    if (last) return;  // this is gone
  }
}

void RemoteStream::send(IoCommand::Kind k) {
  if (closed_) return;
  IoCommand c;
  c.kind = k;
  c.conn = remote_;
  worker_.command(std::move(c));
}

Stream::Write RemoteStream::write(std::string& data) {
  if (closed_) {
    data.clear();
    return Write::Failed;
  }
  if (!data.empty()) {
    handed_ += data.size();
    worker_.handed(data.size());
    // Copied into the turn's batch: the owner's buffer keeps its capacity
    // for the next turn.
    worker_.write(remote_, data);
    data.clear();
  }
  windDownIfDue();
  return writing() ? Write::InFlight : Write::Nothing;
}

void RemoteStream::windDown() {
  // Sent after the output of the owner's next write, which is its last:
  // a layer's closing word (a WebSocket close frame) must follow it, and
  // a worker that wound down first would drop it.
  wind_down_due_ = true;
}

void RemoteStream::windDownIfDue() {
  if (!wind_down_due_) return;
  wind_down_due_ = false;
  send(IoCommand::Kind::WindDown);
}

bool RemoteStream::shutdown() {
  windDownIfDue();
  send(IoCommand::Kind::Shutdown);
  return true;
}

void RemoteStream::close() {
  if (closed_) return;
  send(IoCommand::Kind::Close);
  closed_ = true;
  fd_ = -1;
}

void RemoteStream::setReading(bool on) {
  send(on ? IoCommand::Kind::ResumeReading : IoCommand::Kind::PauseReading);
}

std::string RemoteStream::peer() const {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  const bool ok = fd_ >= 0 && getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0;
  return peerAddress(ss, ok);
}

bool RemoteStream::sync(std::function<void()> done) {
  if (closed_) return false;
  syncs_.push_back(std::move(done));
  send(IoCommand::Kind::Sync);
  return true;
}

void RemoteStream::onEvent(const IoEvent& e, const std::string& bytes) {
  if (e.kind == IoEvent::Kind::Closed) {
    // A Sync sent before the close was answered before it; any left are
    // answered now, after this stream is gone.
    std::vector<std::function<void()>> left;
    left.swap(syncs_);
    worker_.all().connectionClosed(worker_);
    handler_->onStreamClosed();  // frees this
    for (auto& f : left) f();
    return;
  }
  if (e.kind == IoEvent::Kind::Synced) {
    // Answered even after close(): the bytes before it went to the handler
    // (or were dropped with the connection).
    if (syncs_.empty()) return;
    std::function<void()> f = std::move(syncs_.front());
    syncs_.erase(syncs_.begin());
    f();
    return;
  }
  if (closed_) return;
  switch (e.kind) {
    case IoEvent::Kind::Data:
      // A read on the worker is one Data event: handled as one here, and
      // then its end (Connection::onStreamInputDone).
      if (handler_->onStreamData(reinterpret_cast<const uint8_t*>(bytes.data()) + e.off, e.len) && !closed_)
        handler_->onStreamInputDone();
      break;
    case IoEvent::Kind::Activity:
      handler_->onStreamActivity();
      break;
    case IoEvent::Kind::Handshake:
      if (e.detail) {
        all_done_ = true;
      } else {
        tls_done_ = true;
        if (e.len) {
          has_cn_ = true;
          cn_.assign(bytes, e.off, e.len);
        }
      }
      handler_->onStreamActivity();
      break;
    case IoEvent::Kind::Written:
      taken_ = std::max(taken_, e.n);
      handler_->onStreamWritable(true);
      break;
    case IoEvent::Kind::WriteFailed:
      taken_ = handed_;  // nothing is in flight any more
      handler_->onStreamWritable(false);
      break;
    case IoEvent::Kind::End:
      handler_->onStreamEnd(static_cast<StreamEnd>(e.detail));
      break;
    case IoEvent::Kind::Synced:
    case IoEvent::Kind::Lane:
    case IoEvent::Kind::Closed:
      break;
  }
}

// ---- IoWorker ----

namespace {
constexpr size_t kWorkerReadBuffer = 64 * 1024;
}

IoWorker::IoWorker(IoWorkers& all, unsigned index) : all_(all), index_(index), limits_(all.limits()) {}

IoWorker::~IoWorker() {
  join();
  if (loop_open_) uv_loop_close(&loop_);
}

bool IoWorker::start(std::string& err) {
  int r = uv_loop_init(&loop_);
  if (r != 0) {
    err = std::string("worker loop: ") + uv_strerror(r);
    return false;
  }
  loop_open_ = true;
  r = waker_.init(&loop_, &IoWorker::onWake, this);
  if (r != 0) {
    err = std::string("worker loop: ") + uv_strerror(r);
    return false;
  }
  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, &IoWorker::onCheck);
  uv_prepare_init(&loop_, &prepare_);
  prepare_.data = this;
  uv_prepare_start(&prepare_, &IoWorker::onPrepare);
  read_buf_.resize(kWorkerReadBuffer);
  thread_ = std::thread([this] { run(); });
  // Named for operators (top -H, perf): petrel-io-1, petrel-io-2, ...
  // Named here, not by the thread itself, so that the name is there by the
  // time the broker says it has started.
  const std::string name = "petrel-io-" + std::to_string(index_);
  pthread_setname_np(thread_.native_handle(), name.substr(0, 15).c_str());
  return true;
}

void IoWorker::run() {
  // Handles are closed by the Stop command; the loop then runs out.
  uv_run(&loop_, UV_RUN_DEFAULT);
}

void IoWorker::write(WorkerConn* conn, const std::string& data) {
  IoCommand c;
  c.kind = IoCommand::Kind::Write;
  c.conn = conn;
  c.off = pending_bytes_.size();
  c.len = data.size();
  pending_bytes_ += data;
  pending_.push_back(std::move(c));
}

void IoWorker::flush() {
  shared_key_ = nullptr;  // pending_bytes_ go
  if (pending_.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (inbox_.empty()) {
      inbox_.swap(pending_);
      inbox_bytes_.swap(pending_bytes_);
    } else {
      const size_t base = inbox_bytes_.size();
      for (auto& c : pending_) {
        c.off += base;
        inbox_.push_back(std::move(c));
      }
      inbox_bytes_ += pending_bytes_;
    }
  }
  pending_.clear();
  pending_bytes_.clear();
  if (pending_bytes_.capacity() > limits_.spare_max) std::string().swap(pending_bytes_);
  waker_.wake();
}

void IoWorker::stop() {
  if (!thread_.joinable()) return;  // never started (start-up failed before it)
  IoCommand c;
  c.kind = IoCommand::Kind::Stop;
  command(std::move(c));
  flush();
}

void IoWorker::join() {
  if (thread_.joinable()) thread_.join();
}

void IoWorker::onWake(void* self) { static_cast<IoWorker*>(self)->onCommands(); }

void IoWorker::onCommands() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    work_.swap(inbox_);
    work_bytes_.swap(inbox_bytes_);
  }
  for (IoCommand& c : work_) {
    switch (c.kind) {
      case IoCommand::Kind::Write:
        tookUp(c.len);
        c.conn->write(work_bytes_.data() + c.off, c.len, c.id_at, c.packet_id);
        break;
      case IoCommand::Kind::Start:
        c.conn->start(*this, c.fd);
        break;
      case IoCommand::Kind::Resume:
        if (paused_ && unhandled_ <= limits_.unhandled_low) {
          paused_ = false;
          resumeAll();
        }
        break;
      case IoCommand::Kind::Stop:
        // Every connection is gone (IoWorkers waits for that): close the
        // loop's own handles, and the thread ends.
        waker_.close();
        uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
        break;
      default:
        c.conn->run(c);
        break;
    }
  }
  work_.clear();
  work_bytes_.clear();
  // After a burst: do not keep its peak for ever.
  if (work_bytes_.capacity() > limits_.spare_max) std::string().swap(work_bytes_);
}

void IoWorker::onCheck(uv_check_t* h) { static_cast<IoWorker*>(h->data)->endOfTurn(); }
void IoWorker::onPrepare(uv_prepare_t* h) { static_cast<IoWorker*>(h->data)->endOfTurn(); }

void IoWorker::endOfTurn() {
  // A flush can make more connections dirty (it reports, it may fail).
  while (!dirty_.empty()) {
    std::vector<WorkerConn*> batch;
    batch.swap(dirty_);
    for (WorkerConn* c : batch)
      if (c) c->flush();
  }
  post(urgent_out_, true);
  post(out_, false);
}

void IoWorker::post(IoEventBatch& b, bool urgent) {
  if (b.events.empty()) return;
  const uint64_t unhandled = unhandled_ += b.bytes.size();
  b.from = this;
  all_.post(b, urgent);
  if (!paused_ && unhandled > limits_.unhandled_high) {
    // The main loop is behind on this loop's input: stop reading until it
    // has caught up (it sends Resume). Flagged first, then checked again:
    // the main loop checks the flag after it counts a batch handled, so
    // one of the two sees the other.
    paused_ = true;
    pauseAll();
    if (unhandled_ <= limits_.unhandled_low) {
      paused_ = false;
      resumeAll();
    } else {
      input_pauses_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void IoWorker::pauseAll() {
  for (WorkerConn* c : conns_) c->loopReading(false);
}

void IoWorker::resumeAll() {
  for (WorkerConn* c : conns_) c->loopReading(true);
}

void IoWorker::handledBatch(size_t n) {
  const uint64_t left = unhandled_ -= n;
  if (left <= limits_.unhandled_low && paused_) {
    IoCommand c;
    c.kind = IoCommand::Kind::Resume;
    command(std::move(c));
  }
}

void IoWorker::tookUp(size_t n) {
  const uint64_t before = backlog_.fetch_sub(n, std::memory_order_relaxed);
  if (before > limits_.backlog_high && before - n <= limits_.backlog_high) all_.wake();
}

void IoWorker::added(WorkerConn* c) {
  c->slot = conns_.size();
  conns_.push_back(c);
  if (paused_) c->loopReading(false);
}

void IoWorker::connectionGone(WorkerConn* c) {
  for (auto& d : dirty_)
    if (d == c) d = nullptr;
  WorkerConn* last = conns_.back();
  conns_[c->slot] = last;
  last->slot = c->slot;
  conns_.pop_back();
  delete c;
}

// ---- IoWorkers (main loop) ----

LoopLimits LoopLimits::forLoops(unsigned loops) {
  const uint64_t n = std::max(1u, loops);
  // Totals over all the loops, and the floor of a loop's share.
  constexpr uint64_t kBacklogTotal = 16ull << 20;
  constexpr uint64_t kUnhandledTotal = 16ull << 20;
  constexpr uint64_t kSpareTotal = 8ull << 20;
  constexpr uint64_t kFloor = 256ull << 10;
  const auto share = [n, kFloor](uint64_t total, uint64_t most) { return std::clamp(total / n, kFloor, most); };
  LoopLimits l;
  l.backlog_high = share(kBacklogTotal, 8ull << 20);
  l.unhandled_high = share(kUnhandledTotal, 8ull << 20);
  l.unhandled_low = l.unhandled_high / 4;
  l.spare_max = static_cast<size_t>(share(kSpareTotal, 4ull << 20));
  return l;
}

IoWorkers::IoWorkers(uv_loop_t* main, uint32_t loops) : main_(main) {
  unsigned n = loops;
  if (n == 0) {
    const unsigned affinity = uv_available_parallelism();
    const std::optional<CpuQuota> quota = ownCpuQuota();
    n = autoLoops(affinity, quota);
    char why[512];
    if (quota)
      snprintf(why, sizeof why, "workers: auto: %u CPU%s in the affinity mask, a CPU quota of %.2f CPUs (cgroup %s)",
               affinity, affinity == 1 ? "" : "s", quota->cpus(), quota->where.c_str());
    else
      snprintf(why, sizeof why, "workers: auto: %u CPU%s in the affinity mask, no CPU quota", affinity,
               affinity == 1 ? "" : "s");
    sized_by_ = why;
  }
  limits_ = LoopLimits::forLoops(n);
  // One loop: the main loop carries the connections itself. More: each has
  // a thread of its own, and the main loop carries none.
  if (n > 1)
    for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<IoWorker>(*this, i + 1));
}

IoWorkers::~IoWorkers() {
  if (started_ && !finished_) {
    for (auto& w : workers_) w->stop();
    for (auto& w : workers_) w->join();
    // The main loop is not running (start-up failed): close the handle now.
    waker_.close();
    uv_run(main_, UV_RUN_NOWAIT);
  }
}

bool IoWorkers::start(std::string& err) {
  if (workers_.empty()) return true;
  const int r = waker_.init(main_, &IoWorkers::onWake, this);
  if (r != 0) {
    err = std::string("main loop: ") + uv_strerror(r);
    return false;
  }
  started_ = true;
  giveBackLargeBuffers();
  for (auto& w : workers_)
    if (!w->start(err)) return false;
  return true;
}

void IoWorkers::giveBackLargeBuffers() {
#ifdef __GLIBC__
  // Each loop's thread allocates from an arena of its own, and glibc raises
  // its mmap threshold to the size of any large block freed (up to 32 MiB):
  // after a burst, every arena keeps the megabytes its loop's output and
  // event buffers grew to, and with many loops that is far more than the
  // output budget (bench/README.md). A fixed threshold maps each block of
  // 256 KiB or more on its own and gives it back when freed. An operator's
  // own MALLOC_MMAP_THRESHOLD_ is left alone.
  if (!getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif
}

IoWorker* IoWorkers::pick() {
  if (workers_.empty() || stopping_) return nullptr;
  return workers_[next_++ % workers_.size()].get();
}

void IoWorkers::flush() {
  for (auto& w : workers_) w->flush();
}

void IoWorkers::stop() {
  if (!started_ || stopping_) return;
  stopping_ = true;
  if (live_ == 0) finish();
}

void IoWorkers::finish() {
  if (finished_) return;
  finished_ = true;
  for (auto& w : workers_) w->stop();
  for (auto& w : workers_) w->join();
  waker_.close();
}

void IoWorkers::connectionClosed(IoWorker& w) {
  PETREL_CHECK(w.connections_ > 0 && live_ > 0);
  --w.connections_;
  --live_;
}

void IoWorkers::post(IoEventBatch& b, bool urgent) {
  IoWorker* from = b.from;
  {
    std::lock_guard<std::mutex> lock(mu_);
    (urgent ? urgent_inbox_ : inbox_).push_back(std::move(b));
    if (urgent) urgent_waiting_.store(true, std::memory_order_relaxed);
    b = IoEventBatch();
    if (!from->spares_.empty()) {
      b = std::move(from->spares_.back());
      from->spares_.pop_back();
    }
  }
  waker_.wake();
}

void IoWorkers::onWake(void* self) { static_cast<IoWorkers*>(self)->handleEvents(); }

bool IoWorkers::holdInput() {
  // A worker is behind on output: no more input (and so no more output)
  // until it has caught up; it wakes this loop then.
  if (!stopping_)
    for (auto& w : workers_)
      if (w->behind()) {
        if (!holding_) ++w->output_waits_;
        holding_ = true;
        return true;
      }
  holding_ = false;
  return false;
}

std::vector<IoWorkers::Flow> IoWorkers::flow() const {
  std::vector<Flow> v;
  for (const auto& w : workers_) v.push_back({"petrel-io-" + std::to_string(w->index()), w->inputPauses(), w->output_waits_});
  return v;
}

void IoWorkers::handleBatch(IoEventBatch& b, bool urgent) {
  size_t i = 0;
  for (const IoEvent& e : b.events) {
    e.stream->receive(e, b.bytes, urgent);
    // An ordinary batch may hold thousands of packets: a collector's
    // acknowledgements that came meanwhile are handled between them.
    if (!urgent && ++i % kUrgentCheck == 0 && urgent_waiting_.load(std::memory_order_relaxed) && handleUrgent())
      flush();
  }
  IoWorker* from = b.from;
  from->handledBatch(b.bytes.size());
  // Back to its loop for reuse, unless it grew large.
  if (b.bytes.capacity() <= limits_.spare_max) {
    b.events.clear();
    b.bytes.clear();
    std::lock_guard<std::mutex> lock(mu_);
    if (from->spares_.size() < kSpares) from->spares_.push_back(std::move(b));
  }
}

bool IoWorkers::handleUrgent() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (IoEventBatch& b : urgent_inbox_) urgent_work_.push_back(std::move(b));
    urgent_inbox_.clear();
    urgent_waiting_.store(false, std::memory_order_relaxed);
  }
  bool any = false;
  while (!urgent_work_.empty() && !holdInput()) {
    IoEventBatch b = std::move(urgent_work_.front());
    urgent_work_.pop_front();
    handleBatch(b, true);
    any = true;
  }
  return any;
}

void IoWorkers::handleEvents() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (IoEventBatch& b : inbox_) work_.push_back(std::move(b));
    inbox_.clear();
  }
  for (;;) {
    // A collector's acknowledgements: handled before the next batch, and
    // the window they refilled goes out now rather than after the rest
    // (Connection::onStreamInputDone wrote it to its stream).
    if (handleUrgent() && !work_.empty()) flush();
    if (work_.empty() || holdInput()) break;
    IoEventBatch b = std::move(work_.front());
    work_.pop_front();
    handleBatch(b, false);
  }
  // What the events caused (closes, above all while shutting down, when the
  // main loop's own end-of-turn hooks are gone) goes out now.
  flush();
  if (stopping_ && live_ == 0) finish();
}

}  // namespace petrel
