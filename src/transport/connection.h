// src/transport/connection.h — one client's MQTT connection on a libuv loop,
// on top of a stream stack (src/transport/stream.h: TCP, TLS over TCP,
// WebSocket over either):
// decodes packets in place from the loop's shared read buffer, batches every
// packet owed to the client during a loop turn into one write (one flush
// path, whatever the stack), and closes itself after a protocol error once
// the final packet is out.
//
// Memory: an idle connection holds no read buffer (partial packets are the
// only bytes kept between reads) and an empty output buffer; the TCP stream
// lives inside it, and only a TLS or WebSocket listener adds a layer.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/decoder.h"
#include "mqtt/protocol.h"
#include "src/acks/held_output.h"
#include "src/timers/timer_queue.h"
#include "src/transport/stream.h"
#include "src/transport/tcp_stream.h"
#include "tls/tls_session.h"

namespace petrel {

class Bridge;
class Broker;
class IoWorker;
class RemoteStream;
class Session;
struct SharedPacket;
struct ListenerSecurity;
struct WebSocketConfig;
namespace tls {
class TlsContext;
}

// The owner of the stream stack: its StreamHandler side is private, reached
// by the streams only.
class Connection final : private StreamHandler {
 public:
  explicit Connection(Broker& broker);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts reading after accept().
  bool start(uv_stream_t* server);
  // Accepts the next connection of `server` onto worker loop `w`
  // (src/transport/io_workers.h), with the listener's layers (TLS when `tls`
  // is set, WebSocket when `ws` is) built there. Start-up errors reach the
  // connection as the end of its stream.
  bool startOn(IoWorker& w, uv_stream_t* server, const tls::TlsContext* tls, const WebSocketConfig* ws);
  // Client mode (a bridge's link): connects; the broker hears of the
  // outcome (Broker::onBridgeConnected). 0 or a libuv error; on an error
  // the caller closes the connection.
  int connectTo(const sockaddr* addr);

  // Output: bytes appended here go out at the end of the loop turn -- or,
  // while output is held, after the held output.
  std::string& out() {
    if (holding()) return held_->tail();
    markDirty();
    return out_;
  }
  size_t pendingOutput() const {
    // Asked for every message delivered: the common case (plain TCP,
    // nothing held, no write in flight) is a few loads.
    if (!layer_ && !held_ && !tcp_.writing()) return out_.size();
    return pendingOutputInAll();
  }
  void flush();
  bool onWorkerLoop() const { return remote_; }
  // On a connection of a worker loop only: a PUBLISH encoded once for
  // several receivers (see IoWorker::writeShared), `packet_id` put in,
  // handed over without a copy of its own when nothing of this connection
  // waits to go before it. False: append it to out() instead.
  bool writeShared(const SharedPacket& p, uint16_t packet_id);

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
  OutMark outMark() const { return held_ ? held_->mark(out_) : OutMark{0, out_.size()}; }
  void holdSince(OutMark mark, uint64_t ticket, const AckGatePtr& gate = nullptr,
                 const AckGatePtr& required = nullptr);
  // Releases held output up to the committed ticket; true while some stays.
  bool release(uint64_t committed);
  bool holding() const { return held_ && !held_->empty(); }
  // A commit failed: the held acknowledgements must never be sent.
  void dropHeld() { held_.reset(); }
  bool in_held_list = false;
  bool in_ack_poller = false;  // on the broker's AckPoller list

  // Input on hold (the CONNECT's password check runs off the loop): no
  // packet is handled and nothing more is read until resumeInput(), which
  // handles what was received meanwhile.
  void pauseInput();
  void resumeInput();
  bool inputPaused() const { return input_paused_; }
  // The CONNECT waiting off the loop (its password check, or another
  // connection's input: Broker::waitForInputOf), 0 = none.
  uint64_t auth_ticket = 0;

  // Connections whose sockets live on a worker loop: has that loop read
  // what the kernel holds for the socket now and pass it on; `done` runs
  // once it has been handled here (RemoteStream::sync). False when there is
  // nothing to wait for: the socket is on this loop, whose reads are
  // already in order, or the connection is closing.
  bool syncInput(std::function<void()> done);

  // AckPoller: the connection is on this loop, connected, reading and not
  // closing; pollInput() reads what its socket holds now and handles it as
  // a read of the loop's would be. True when something was read.
  bool pollable() const {
    return connected && !remote_ && !closing_ && !input_paused_ && !lingering_ && !half_closed_ && !peer_closed_ &&
           !handle_closed_;
  }
  bool pollInput() { return tcp_.pollInput(); }

  // Closes the connection once everything queued is written.
  void closeAfterFlush();
  // After the client's DISCONNECT: stop handling packets, close when the
  // client closes (or after a grace period: the broker's connection timer).
  void closeWhenPeerDoes(uint64_t now_ms);
  bool lingering() const { return lingering_; }
  // After the last packet of a close: half-closed, discarding input until
  // the client closes (or the connection timer's deadline, kHalfCloseLingerMs).
  bool halfClosed() const { return half_closed_; }
  static constexpr uint64_t kHalfCloseLingerMs = 2000;
  void closeNow() { beginClose(); }
  // Sends DISCONNECT (MQTT 5, after CONNECT) with `reason`, then closes.
  void disconnect(mqtt::Reason reason);
  bool closing() const { return closing_; }
  // The socket is closed (or closing): nothing more can be written.
  bool handleClosed() const { return handle_closed_; }
  Broker& broker() const { return broker_; }

  // "address:port" of the client, for logs (looked up when needed rather
  // than kept: every byte of an idle connection counts).
  std::string peer() const { return layer_ ? layer_->peer() : tcp_.peer(); }

  // Protocol state, maintained by the broker. (The small fields go
  // together: padding would cost every idle connection.)
  bool connected = false;       // CONNECT accepted
  mqtt::Version version = mqtt::Version::V311;
  bool graceful = false;        // DISCONNECT received (no will)
  uint16_t keepalive = 0;       // effective, seconds
  Session* session = nullptr;
  uint64_t last_rx_ms = 0;
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
  // Set on the outgoing connection of one of our bridges (bridges/).
  Bridge* bridge = nullptr;
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
  // On a TLS or WebSocket listener: stacks a TLS layer on the socket when
  // `tls` is set, a WebSocket layer (on TLS, if both) when `ws` is. Before
  // start().
  void enableLayers(const tls::TlsContext* tls, const WebSocketConfig* ws);
  // TLS: the handshake is not done yet (false without TLS).
  bool tlsHandshaking();
  // TLS: the client certificate's common name, when one was verified.
  const std::string* peerCommonName();
  // Every layer's handshake (TLS, the WebSocket upgrade) is complete.
  bool handshakeDone() const { return !layer_ || layer_->handshakeDone(); }
  // Client mode: TLS toward a server whose certificate must carry
  // `server_name` (empty: the chain is verified, the name is not).
  void enableClientTls(const tls::TlsContext& ctx, const std::string& server_name);

 private:
  // StreamHandler: the top of the stack talks to the connection.
  uint8_t* readBuffer(size_t& len, bool transformed) override;
  bool onStreamData(const uint8_t* data, size_t len) override;
  void onStreamActivity() override;
  void onStreamInputDone() override;
  void onStreamOutput() override { markDirty(); }
  void onStreamWritable(bool ok) override;
  void onStreamEnd(StreamEnd why) override;
  void onStreamClosed() override;
  void onStreamConnected(int status) override;

  // The top of the stack: what output is handed to, what closes.
  Stream& top() { return layer_ ? *layer_ : static_cast<Stream&>(tcp_); }
  void setClosing();
  void endOutput();  // all output of a closing connection is written

  void processShared(const uint8_t* data, size_t len);
  void processBuffered();
  // Returns false when the connection must stop processing input.
  bool handleFrame(const mqtt::Frame& f);
  void markDirty();
  // Tells the broker when output that had been above the high-water mark
  // has drained below it (want_writable).
  void notifyWritable();
  void beginClose();

  Broker& broker_;
  TcpStream tcp_;  // the socket, the bottom of the stack
  // The top layer above the socket (TLS, WebSocket); null on plain TCP, so
  // the plain path calls the TCP stream directly.
  std::unique_ptr<Stream> layer_;
  // Holds the bytes of a packet that arrived in parts; allocated only then.
  std::unique_ptr<mqtt::StreamDecoder> decoder_;
  mqtt::StreamDecoder& decoder();
  size_t buffered() const { return decoder_ ? decoder_->buffered() : 0; }
  std::string out_;  // plaintext output of this loop turn
  // Held output, allocated while something is held.
  std::unique_ptr<HeldOutput> held_;
  // pendingOutput() when a layer, a write in flight or held output adds to it.
  size_t pendingOutputInAll() const;
  bool lingering_ = false;  // closeWhenPeerDoes()
  bool half_closed_ = false;  // endOutput()
  bool closing_ = false;
  bool handle_closed_ = false;
  bool dirty_ = false;
  bool reading_into_decoder_ = false;
  bool input_paused_ = false;
  bool peer_closed_ = false;  // input ended (onStreamEnd): nothing to linger for
  bool remote_ = false;  // the stack is on a worker loop: layer_ is a RemoteStream
  RemoteStream& remote();
  // Keeps bytes received while input is paused for resumeInput().
  void stash(const uint8_t* data, size_t len);

};

}  // namespace petrel
