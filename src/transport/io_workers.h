// src/transport/io_workers.h — `workers: N`: client connections spread over N
// event loops, each loop owning its connections' sockets for their lifetime.
//
// With N = 1 the main loop carries every connection, as it always has.
// With N > 1 IoWorkers runs N loops, each on its own thread, and new
// connections go to them in turn; the main loop keeps none.
// A connection on a worker loop keeps its whole stream stack there (the
// socket, TLS, WebSocket): reads, decryption, the WebSocket framing, writes
// and encryption run on that loop's core. What an MQTT connection means --
// its Connection (framing, held output, flow control), session, routing,
// the store -- stays on the main loop, as with one loop, so every guarantee
// of the broker holds unchanged whatever N is: one thread owns the state.
//
// Between the loops nothing is shared but two kinds of batches, handed over
// under a short lock and announced with one coalesced wake-up per batch
// (a Waker, src/util/waker.h):
//   main -> worker  IoCommand: start a socket, write these bytes, wind down,
//                   half-close, close, pause or resume reading, read what
//                   the socket holds now and say so;
//   worker -> main  IoEvent: bytes read (plaintext), activity, handshake
//                   done, bytes written, end of input, read up, closed.
// Each batch is built during a loop turn and handed over once at its end
// (check, and prepare before the loop blocks). A turn's output for all of a
// worker's connections is copied into one buffer, so each Connection keeps
// its buffer's capacity; a PUBLISH encoded once for several receivers is
// copied there once, and each of its Write commands names those bytes. The
// buffers and event batches go round between the loops rather than being
// allocated each turn.
//
// On the main loop a connection on a worker loop has a RemoteStream as its
// stream stack; on the worker, a WorkerConn owns the real stack. Each knows
// the other's address only as an identifier it sends back: a RemoteStream
// lives until its "closed" event, a WorkerConn until it has sent it, and
// nothing is sent to a WorkerConn after "close".
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "src/transport/stream.h"
#include "src/util/waker.h"

namespace petrel {

class IoWorker;
class IoWorkers;
class RemoteStream;
class WorkerConn;
struct WebSocketConfig;
namespace tls {
class TlsContext;
}

// The layers of a server-side stack on `tcp`: TLS when `tls` is set,
// WebSocket (on TLS, if both) when `ws` is; null when neither. The top one
// is returned and owns the ones under it.
std::unique_ptr<Stream> makeServerLayers(Stream& tcp, const tls::TlsContext* tls, const WebSocketConfig* ws);

// main -> worker
struct IoCommand {
  enum class Kind : uint8_t {
    Start,
    Write,
    WindDown,
    Shutdown,
    Close,
    PauseReading,
    ResumeReading,
    Sync,
    Lane,
    Resume,
    Stop
  };
  Kind kind;
  bool urgent = false;  // Lane: the lane the connection's events take from now on
  WorkerConn* conn = nullptr;
  int fd = -1;  // Start
  // Write: a range of the batch's bytes (IoWorker::pending_bytes_, then
  // inbox_bytes_, then work_bytes_: the buffers go round, so a busy loop
  // allocates none). Several Writes may name one range (writeShared()).
  size_t off = 0;
  size_t len = 0;
  // Write: a packet id put in at `id_at` of the range (0: none).
  uint32_t id_at = 0;
  uint16_t packet_id = 0;
};

// One encoding of a PUBLISH going to several connections this turn
// (PublishCache): `key` and `gen` name it, `bytes` are the packet with
// packet id 0, which goes at `id_at` (0: QoS 0, none).
struct SharedPacket {
  const void* key;
  uint64_t gen;
  std::string_view bytes;
  uint32_t id_at;
};

// worker -> main
struct IoEvent {
  enum class Kind : uint8_t { Data, Activity, Handshake, Written, WriteFailed, End, Synced, Lane, Closed };
  Kind kind;
  // Handshake: true when every layer's handshake is done, false when only
  // TLS's is. End: the StreamEnd. Lane: the connection's last event in this
  // lane; the rest come in the urgent lane (1) or the ordinary one (0).
  uint8_t detail = 0;
  RemoteStream* stream = nullptr;
  // Data, Handshake (the client certificate's common name): a range of the
  // batch's bytes. Written: the bytes handed to the worker that the kernel
  // has taken, counted from the start.
  uint64_t n = 0;
  uint32_t off = 0;
  uint32_t len = 0;
};

// Events go to the main loop in two lanes. The ordinary lane carries a
// worker's turn of input, which under a fan-in is the PUBLISH of hundreds
// of publishers; the main loop handles its batches in order, so a
// collector's acknowledgements read in a worker's turn would wait behind
// every batch before it, and its window of messages would be refilled once
// per main-loop turn at best (bench/README.md, "Many publishers, one
// collector"). A subscriber whose window is full while messages wait for
// it (RemoteStream::setUrgent) is moved to the urgent lane: the worker
// hands its events over as soon as its read is done, and the main loop
// handles them ahead of the ordinary batches: between any two of them, and
// every kUrgentCheck events inside one when they came meanwhile. The
// refilled window's output goes back to the worker at once.
//
// A connection's events stay in order: on a Lane command the worker puts a
// Lane event in the old lane, after everything the connection has sent
// there, and posts the rest in the new one; the main loop keeps what comes
// in the new lane (RemoteStream::deferred_) until it has handled that Lane
// event. Events of different connections were never in any order the
// broker relies on (they come through different loops already).
struct IoEventBatch {
  IoWorker* from = nullptr;
  std::vector<IoEvent> events;
  std::string bytes;
};

// The main loop's side of a connection whose stream stack lives on a worker
// loop: a Stream to its Connection, which notices no difference but in
// time. write() takes all of the bytes, always (they are copied to the
// worker), and the write is "in flight" until the worker says the kernel
// took them.
class RemoteStream final : public Stream {
 public:
  // Builds the stack for `fd` (an accepted socket, now owned by the worker):
  // TLS when `tls` is set, WebSocket when `ws` is, and starts it on `w`.
  RemoteStream(IoWorker& w, int fd, const tls::TlsContext* tls, const WebSocketConfig* ws);
  ~RemoteStream() override;

  Write write(std::string& data) override;
  // Hands `p` (packet id `packet_id` put in) to the worker after what was
  // written before, sharing the turn's one copy of its bytes with the
  // other connections of that loop it goes to. False, and nothing is
  // sent: the stream is closed or winding down.
  bool writeShared(const SharedPacket& p, uint16_t packet_id);
  bool writing() const override { return handed_ != taken_; }
  size_t pendingBytes() const override { return handed_ - taken_; }
  void windDown() override;
  bool shutdown() override;
  void close() override;
  std::string peer() const override;
  bool handshakeDone() const override { return all_done_; }
  // The TLS layer's handshake is done (true without TLS).
  bool tlsHandshakeDone() const { return tls_done_; }
  // The client certificate's common name, when TLS verified one.
  const std::string* peerCommonName() const { return has_cn_ ? &cn_ : nullptr; }
  void setReading(bool on);
  // Has the worker read what the kernel holds for this socket now and pass
  // it on; `done` runs once those bytes have reached the handler, in
  // order with the rest of this stream's events (at the latest when the
  // stream is closed). False, and `done` is dropped: the stream is closed,
  // nothing more will be read.
  //
  // What a client sent on this connection before it opened another has
  // then been seen: the two connections' bytes come through different
  // loops, which the main loop may hear of in either order.
  bool sync(std::function<void()> done);

  // Events go in the urgent lane (true) or the ordinary one (see
  // IoEventBatch). A stream that asks for the urgent lane while
  // IoWorkers::kMaxUrgent others have it stays where it is.
  void setUrgent(bool on);
  bool urgent() const { return want_urgent_; }
  // The event being handled came in the urgent lane.
  bool inUrgentLane() const { return lane_urgent_; }

  // From IoWorkers, on the main loop: `e` came in the urgent lane or not.
  void receive(const IoEvent& e, const std::string& bytes, bool urgent_lane);

 private:
  void onEvent(const IoEvent& e, const std::string& bytes);

  void send(IoCommand::Kind k);
  void windDownIfDue();

  IoWorker& worker_;
  WorkerConn* remote_;
  uint64_t handed_ = 0;  // bytes handed to the worker
  uint64_t taken_ = 0;   // of those, taken by the kernel
  int fd_;               // for peer(); the worker closes it after close()
  bool closed_ = false;  // close() sent: nothing more goes to the worker
  bool wind_down_due_ = false;  // windDown() seen, not yet sent
  bool tls_done_;
  bool all_done_;
  bool has_cn_ = false;
  std::string cn_;
  std::vector<std::function<void()>> syncs_;  // sync(): waiting, oldest first
  bool want_urgent_ = false;  // the lane asked of the worker
  bool lane_urgent_ = false;  // the lane whose events are handled now
  // Events that came in the other lane before the Lane event that ends
  // this one: handled after it, in order.
  struct Deferred {
    IoEvent e;
    bool urgent_lane;
  };
  std::vector<Deferred> deferred_;
  std::string deferred_bytes_;
};

// What may wait between the main loop and one worker loop, in bytes: each
// is a share of a total for all the loops, so that on a machine with many
// cores the buffers between the loops take no more memory than on one with
// few, however many loops `workers: auto` starts (two loops get 8 MiB
// each, sixteen 1 MiB; no share goes below 256 KiB).
struct LoopLimits {
  // Output handed over and not yet taken up by the worker: above it the
  // main loop takes no more input until the worker has caught up.
  uint64_t backlog_high;
  // Input passed to the main loop and not yet handled there: above high
  // the worker stops reading its sockets, below low it starts again.
  uint64_t unhandled_high;
  uint64_t unhandled_low;
  // The most a command or event buffer keeps for reuse after a turn.
  size_t spare_max;

  static LoopLimits forLoops(unsigned loops);
};

// One worker loop on its own thread.
class IoWorker {
 public:
  IoWorker(IoWorkers& all, unsigned index);
  ~IoWorker();
  IoWorker(const IoWorker&) = delete;
  IoWorker& operator=(const IoWorker&) = delete;

  bool start(std::string& err);
  unsigned index() const { return index_; }
  IoWorkers& all() { return all_; }
  size_t connections() const { return connections_; }

  // Main loop: queue a command; it goes at the end of the turn (IoWorkers::flush).
  void command(IoCommand&& c) { pending_.push_back(std::move(c)); }
  // Main loop: a Write command for `conn` with a copy of `data`.
  void write(WorkerConn* conn, const std::string& data);
  // Main loop: a Write command for `conn` with `p`'s bytes, copied into the
  // batch the first time this turn `p` comes (its key and generation), and
  // named again by later commands.
  void writeShared(WorkerConn* conn, const SharedPacket& p, uint16_t packet_id);
  // Main loop: hands this turn's commands over.
  void flush();
  // Main loop: asks the thread to end once its handles are closed; join()
  // waits for it.
  void stop();
  void join();

  // Flow control between the loops. Each side bounds what waits for the
  // other:
  // * output the main loop has handed over and this loop has not yet
  //   looked at (its CPU is behind, not a client's socket): above
  //   backlog_high the main loop stops taking events from any worker --
  //   no new input, so no new output -- until it is below again;
  // * input this loop has passed to the main loop, not yet handled there:
  //   above unhandled_high this loop stops reading its sockets (TCP then
  //   holds the clients back) until the main loop has caught up below
  //   unhandled_low.
  // So a loop that falls behind slows its peers instead of making them
  // buffer (or, for QoS 0 over a client's budget, drop) without bound.
  // The marks are this loop's share of a fixed total (LoopLimits).
  bool behind() const { return backlog_.load(std::memory_order_relaxed) > limits_.backlog_high; }
  // Times this loop stopped reading for unhandled_high (any thread may ask).
  uint64_t inputPauses() const { return input_pauses_.load(std::memory_order_relaxed); }
  void handed(size_t n) { backlog_.fetch_add(n, std::memory_order_relaxed); }
  // Main loop: a batch of this loop's events has been handled.
  void handledBatch(size_t n);

  // Worker loop, from WorkerConn: the turn's batch of a lane.
  IoEventBatch& batch(bool urgent) { return urgent ? urgent_out_ : out_; }
  // An urgent connection's read is done: its events go now.
  void postUrgent() { post(urgent_out_, true); }
  void added(WorkerConn* c);
  // A Write command's bytes have been taken up (backlog_).
  void tookUp(size_t n);
  bool readingPaused() const { return paused_; }
  void scheduleFlush(WorkerConn* c) { dirty_.push_back(c); }
  uint8_t* readBuffer(size_t& n) {
    n = read_buf_.size();
    return read_buf_.data();
  }
  uv_loop_t* loop() { return &loop_; }
  void connectionGone(WorkerConn* c);

 private:
  friend class IoWorkers;
  void run();
  void onCommands();
  void endOfTurn();
  static void onWake(void* self);
  static void onCheck(uv_check_t* h);
  static void onPrepare(uv_prepare_t* h);

  void post(IoEventBatch& b, bool urgent);
  void pauseAll();
  void resumeAll();

  IoWorkers& all_;
  const unsigned index_;
  const LoopLimits limits_;
  std::atomic<uint64_t> backlog_{0};    // output handed over, not yet taken up here
  std::atomic<uint64_t> unhandled_{0};  // input passed on, not yet handled
  std::atomic<bool> paused_{false};     // this loop stopped reading (unhandled_)
  std::atomic<uint64_t> input_pauses_{0};  // times it did
  uint64_t output_waits_ = 0;  // main loop: times it stopped taking events for this loop's backlog_
  size_t connections_ = 0;  // main loop's count: started, not yet closed
  std::vector<IoCommand> pending_;  // main loop only
  std::string pending_bytes_;
  // Main loop only: the SharedPacket last copied into pending_bytes_ (key
  // null: none this turn), and where.
  const void* shared_key_ = nullptr;
  uint64_t shared_gen_ = 0;
  size_t shared_off_ = 0;

  // Shared with the main loop, under mu_.
  std::mutex mu_;
  std::vector<IoCommand> inbox_;
  std::string inbox_bytes_;
  // Event batches the main loop has handled, emptied for reuse (IoWorkers::mu_).
  std::vector<IoEventBatch> spares_;

  // Worker loop only.
  uv_loop_t loop_;
  Waker waker_;
  uv_check_t check_;
  uv_prepare_t prepare_;
  std::vector<IoCommand> work_;
  std::string work_bytes_;
  std::vector<WorkerConn*> dirty_;
  std::vector<WorkerConn*> conns_;  // index: WorkerConn::slot
  IoEventBatch out_;
  IoEventBatch urgent_out_;
  std::vector<uint8_t> read_buf_;
  std::thread thread_;
  bool loop_open_ = false;
};

// The worker loops, and the main loop's inbox of their events.
class IoWorkers {
 public:
  // `loops`: the configured number (0, `auto`: one per CPU this process
  // may use, src/util/cgroup_limits.h). 1 runs no thread.
  IoWorkers(uv_loop_t* main, uint32_t loops);
  ~IoWorkers();
  IoWorkers(const IoWorkers&) = delete;
  IoWorkers& operator=(const IoWorkers&) = delete;

  // Starts the threads.
  bool start(std::string& err);
  // The loops in all, the main loop included.
  unsigned loops() const { return workers_.empty() ? 1 : static_cast<unsigned>(workers_.size()); }
  // With `auto`, what set the number, for the log ("" otherwise).
  const std::string& sizedBy() const { return sized_by_; }
  // The loop a new connection goes to, in turn; null: the main loop (one loop).
  IoWorker* pick();
  // End of a main loop turn: every worker gets this turn's commands.
  void flush();

  // The flow control between the loops, per worker loop, for operators:
  // how often it stopped reading because the main loop was behind on its
  // input, and how often the main loop stopped taking input because it was
  // behind on output (LoopLimits: unhandled_high, backlog_high).
  struct Flow {
    std::string thread;  // petrel-io-N
    uint64_t input_pauses = 0;
    uint64_t output_waits = 0;
  };
  std::vector<Flow> flow() const;
  // Shutting down: the workers end once their last connection is closed
  // (the main loop then runs out).
  void stop();

  // At most this many handled batches wait for reuse per worker, and none
  // whose buffers grew past LoopLimits::spare_max (which also bounds what
  // the command buffers keep after a burst).
  static constexpr size_t kSpares = 4;
  const LoopLimits& limits() const { return limits_; }

  // Worker loop: hands a turn's events (of the urgent lane, or the ordinary
  // one) to the main loop; `b` is left empty, ready for the next turn (a
  // batch the main loop has handled, when one is back).
  void post(IoEventBatch& b, bool urgent);

  // At most this many connections are in the urgent lane at once: the few
  // collectors of a fan-in, not every subscriber of a fan-out.
  static constexpr size_t kMaxUrgent = 16;
  // An ordinary batch's events between two looks at the urgent lane.
  static constexpr size_t kUrgentCheck = 64;
  // RemoteStream::setUrgent: one more (false when there are kMaxUrgent), one fewer.
  bool takeUrgent() {
    if (urgent_ >= kMaxUrgent) return false;
    ++urgent_;
    return true;
  }
  void releaseUrgent() { --urgent_; }
  void connectionStarted(IoWorker& w) {
    ++w.connections_;
    ++live_;
  }
  void connectionClosed(IoWorker& w);
  // Worker loop: the main loop may go on (a backlog has come down).
  void wake() { waker_.wake(); }

 private:
  static void onWake(void* self);
  static void giveBackLargeBuffers();
  void handleEvents();
  // Handles the urgent lane's batches; true when there were any.
  bool handleUrgent();
  void handleBatch(IoEventBatch& b, bool urgent);
  // A worker is behind on output (and so the main loop takes no input).
  bool holdInput();
  void finish();

  uv_loop_t* main_;
  std::string sized_by_;
  LoopLimits limits_ = LoopLimits::forLoops(1);  // set with the number of loops
  std::vector<std::unique_ptr<IoWorker>> workers_;
  unsigned next_ = 0;
  size_t live_ = 0;  // connections on worker loops
  size_t urgent_ = 0;  // streams in the urgent lane
  bool started_ = false;
  bool stopping_ = false;
  bool finished_ = false;
  bool holding_ = false;  // holdInput() said so last time it was asked
  Waker waker_;

  std::mutex mu_;
  std::vector<IoEventBatch> inbox_;  // under mu_
  std::vector<IoEventBatch> urgent_inbox_;  // under mu_
  std::atomic<bool> urgent_waiting_{false};  // urgent_inbox_ is not empty (a hint, read without mu_)
  std::deque<IoEventBatch> work_;    // main loop only: taken from the inbox, not yet handled
  std::deque<IoEventBatch> urgent_work_;
};

// Asked for each delivery of a message going to many connections: inline.
inline bool RemoteStream::writeShared(const SharedPacket& p, uint16_t packet_id) {
  if (closed_ || wind_down_due_) return false;
  handed_ += p.bytes.size();
  worker_.handed(p.bytes.size());
  worker_.writeShared(remote_, p, packet_id);
  return true;
}

inline void IoWorker::writeShared(WorkerConn* conn, const SharedPacket& p, uint16_t packet_id) {
  if (shared_key_ != p.key || shared_gen_ != p.gen) {
    shared_key_ = p.key;
    shared_gen_ = p.gen;
    shared_off_ = pending_bytes_.size();
    pending_bytes_ += p.bytes;
  }
  IoCommand& c = pending_.emplace_back();
  c.kind = IoCommand::Kind::Write;
  c.conn = conn;
  c.off = shared_off_;
  c.len = p.bytes.size();
  c.id_at = p.id_at;
  c.packet_id = packet_id;
}

}  // namespace petrel
