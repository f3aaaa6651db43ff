// src/transport/connection.h — one client's network connection on a libuv loop: reads
// into a shared per-loop buffer and decodes packets in place, batches every
// packet owed to the client during a loop turn into one write, and closes
// itself after a protocol error once the final packet is out.
//
// Memory: an idle connection holds no read buffer (partial packets are the
// only bytes kept between reads) and an empty output buffer.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/decoder.h"
#include "mqtt/protocol.h"
#include "src/acks/held_output.h"
#include "src/timers/timer_queue.h"
#include "tls/tls_session.h"

namespace petrel {

class Broker;
class Session;
struct ListenerSecurity;

class Connection {
 public:
  Connection(Broker& broker, uint32_t max_packet_size);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts reading after accept().
  bool start(uv_stream_t* server);

  // Output: bytes appended here go out at the end of the loop turn -- or,
  // while output is held, after the held output.
  std::string& out() {
    if (holding()) return ob_->held.tail();
    markDirty();
    return out_;
  }
  size_t pendingOutput() const {
    size_t n = out_.size();
    if (ob_) n += ob_->wbuf.size() + ob_->tls_out.size() + ob_->held.bytes();
    return n;
  }
  void flush();

  // Buffered output above which messages that can wait (QoS 1/2) are held
  // back rather than encoded.
  static constexpr size_t kOutputHighWater = 1 << 20;
  // True while output is below the high-water mark. When it is not, the
  // broker is told (Broker::onWritable) once it has drained below it: the
  // caller holding a message back needs to do nothing else.
  bool roomForOutput() {
    if (pendingOutput() < kOutputHighWater) return true;
    want_writable = true;
    return false;
  }

  // Held output (src/acks/held_output.h): acknowledgements of messages
  // that must be stored first wait for their commit, and everything written
  // after them waits too. outMark() is taken before a handler writes,
  // holdSince() then holds what it wrote.
  using OutMark = HeldOutput::Mark;
  OutMark outMark() const { return ob_ ? ob_->held.mark(out_) : OutMark{0, out_.size()}; }
  void holdSince(OutMark mark, uint64_t ticket, const AckGatePtr& gate = nullptr);
  // Releases held output up to the committed ticket; true while some stays.
  bool release(uint64_t committed);
  bool holding() const { return ob_ && !ob_->held.empty(); }
  // A commit failed: the held acknowledgements must never be sent.
  void dropHeld() {
    if (ob_) ob_->held.clear();
  }
  bool in_held_list = false;

  // Closes the connection once everything queued is written.
  void closeAfterFlush();
  // After the client's DISCONNECT: stop handling packets, close when the
  // client closes (or after a grace period, see Broker::sweep).
  void closeWhenPeerDoes(uint64_t now_ms);
  bool lingering() const { return lingering_; }
  // After the last packet of a close: half-closed, discarding input until
  // the client closes (or the sweep's deadline, kHalfCloseLingerMs).
  bool halfClosed() const { return half_closed_; }
  static constexpr uint64_t kHalfCloseLingerMs = 2000;
  void closeNow() { beginClose(); }
  // Sends DISCONNECT (MQTT 5, after CONNECT) with `reason`, then closes.
  void disconnect(mqtt::Reason reason);
  bool closing() const { return closing_; }
  // The socket is closed (or closing): nothing more can be written.
  bool handleClosed() const { return handle_closed_; }

  // "address:port" of the client, for logs (looked up when needed rather
  // than kept: every byte of an idle connection counts).
  std::string peer() const;
  uv_tcp_t* handle() { return &tcp_; }

  // Protocol state, maintained by the broker.
  bool connected = false;       // CONNECT accepted
  mqtt::Version version = mqtt::Version::V311;
  Session* session = nullptr;
  uint16_t keepalive = 0;       // effective, seconds
  uint64_t last_rx_ms = 0;
  bool graceful = false;        // DISCONNECT received (no will)
  // Topic aliases (MQTT 5), allocated when a client first uses them.
  struct AliasTables {
    std::vector<std::string> in;   // inbound, index = alias
    std::vector<std::string> out;  // outbound, index = alias - 1
  };
  std::unique_ptr<AliasTables> aliases;
  AliasTables& aliasTables() {
    if (!aliases) aliases = std::make_unique<AliasTables>();
    return *aliases;
  }
  size_t index = 0;             // position in the broker's connection list
  // The connection's next deadline (keep alive, CONNECT and TLS handshake
  // timeouts, lingering after a close), run by the broker
  // (broker/connection_timeouts.cpp).
  Timer timer;

  // Output flow control (Broker::onWritable, Broker::accountOutput).
  // Set when a message waits because this client's output is above the
  // high-water mark: the broker is told once it has drained below it.
  bool want_writable = false;
  size_t accounted_output = 0;  // this connection's share of the broker's total
  uint64_t dropped_qos0 = 0;    // QoS 0 dropped while over its output budget
  // The listener this connection came in on (anonymous access, TLS).
  const ListenerSecurity* listener = nullptr;
  uint64_t accepted_ms = 0;
  // On a TLS listener: wraps the socket in a TLS session. Before start().
  void enableTls(const tls::TlsContext& ctx);
  tls::TlsSession* tlsSession() { return tls_.get(); }

 private:
  static void onAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onWrite(uv_write_t* req, int status);
  static void onClose(uv_handle_t* h);
  static void onShutdown(uv_shutdown_t* req, int status);
  void endOutput();  // all output of a closing connection is written

  void processShared(const uint8_t* data, size_t len);
  void processBuffered();
  // Returns false when the connection must stop processing input.
  bool handleFrame(const mqtt::Frame& f);
  void markDirty();
  // Tells the broker when output that had been above the high-water mark
  // has drained below it (want_writable).
  void notifyWritable();
  void startWrite();  // uv_write of wbuf_
  void beginClose();
  // connection_tls.cpp: ciphertext in, plaintext to the decoder; output
  // encrypted into tls_out_ at flush time.
  void onTlsRead(const uint8_t* data, size_t len);
  bool feedPlain(const uint8_t* data, size_t len);
  void flushTls();

  Broker& broker_;
  uv_tcp_t tcp_;
  // Allocated only while a write is pending in the kernel's stead (most
  // writes complete at once through uv_try_write).
  std::unique_ptr<uv_write_t> write_req_;
  std::unique_ptr<uv_shutdown_t> shutdown_req_;  // endOutput()
  // Holds the bytes of a packet that arrived in parts; allocated only then.
  std::unique_ptr<mqtt::StreamDecoder> decoder_;
  mqtt::StreamDecoder& decoder();
  size_t buffered() const { return decoder_ ? decoder_->buffered() : 0; }
  std::string out_;
  // Output state beyond the plain buffer, allocated while in use: a write
  // the kernel did not take at once, TLS records, held output.
  struct Outbox {
    std::string wbuf;     // bytes handed to uv_write, alive until its callback
    std::string tls_out;  // ciphertext not yet handed to uv_write
    HeldOutput held;
  };
  std::unique_ptr<Outbox> ob_;
  Outbox& ob() {
    if (!ob_) ob_ = std::make_unique<Outbox>();
    return *ob_;
  }
  void trimOutbox() {
    if (ob_ && ob_->wbuf.empty() && ob_->tls_out.empty() && ob_->held.empty()) ob_.reset();
  }
  std::unique_ptr<tls::TlsSession> tls_;  // null on a plain listener
  bool writing_ = false;
  bool lingering_ = false;  // closeWhenPeerDoes()
  bool half_closed_ = false;  // endOutput()
  bool closing_ = false;
  bool handle_closed_ = false;
  bool dirty_ = false;
  bool reading_into_decoder_ = false;

  friend class Broker;
};

}  // namespace petrel
