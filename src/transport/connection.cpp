// src/transport/connection.cpp — the MQTT side of a connection: framing of
// the plaintext its stream stack delivers, the one flush path, and the
// closing states (close after flush, linger until the client closes,
// half-close after the last packet).
#include "src/transport/connection.h"

#include <algorithm>
#include <cstring>

#include <unistd.h>

#include "mqtt/encoder.h"
#include "src/broker/broker.h"
#include "src/sessions/session.h"
#include "src/transport/io_workers.h"
#include "src/transport/tls_stream.h"
#include "src/util/log.h"

namespace petrel {

Connection::Connection(Broker& broker) : broker_(broker) {
  tcp_.setHandler(this);
}

Connection::~Connection() = default;

void Connection::enableLayers(const tls::TlsContext* tls, const WebSocketConfig* ws) {
  layer_ = makeServerLayers(tcp_, tls, ws);
  if (layer_) layer_->setHandler(this);
}

RemoteStream& Connection::remote() { return static_cast<RemoteStream&>(*layer_); }

bool Connection::tlsHandshaking() {
  if (remote_) return !remote().tlsHandshakeDone();
  const tls::TlsSession* t = layer_ ? layer_->tlsSession() : nullptr;
  return t && !t->handshakeDone();
}

const std::string* Connection::peerCommonName() {
  if (remote_) return remote().peerCommonName();
  const tls::TlsSession* t = layer_ ? layer_->tlsSession() : nullptr;
  return t && t->hasPeerCommonName() ? &t->peerCommonName() : nullptr;
}

void Connection::enableClientTls(const tls::TlsContext& ctx, const std::string& server_name) {
  auto t = std::make_unique<TlsStream>(tcp_, ctx);
  if (!server_name.empty()) t->setServerName(server_name);
  layer_ = std::move(t);
  layer_->setHandler(this);
}

int Connection::connectTo(const sockaddr* addr) {
  last_rx_ms = accepted_ms = uv_now(broker_.loop());
  return tcp_.connect(broker_.loop(), addr);
}

void Connection::onStreamConnected(int status) {
  if (closing_) return;
  last_rx_ms = uv_now(broker_.loop());
  broker_.onBridgeConnected(*this, status);
}

size_t Connection::pendingOutputInAll() const {
  size_t n = out_.size() + (layer_ ? layer_->pendingBytes() : tcp_.pendingBytes());
  if (held_) n += held_->bytes();
  return n;
}

mqtt::StreamDecoder& Connection::decoder() {
  if (!decoder_) decoder_ = std::make_unique<mqtt::StreamDecoder>(broker_.maxPacketSizeFor(*this));
  return *decoder_;
}

bool Connection::start(uv_stream_t* server) {
  if (tcp_.accept(server) != 0) {
    beginClose();
    return false;
  }
  last_rx_ms = accepted_ms = uv_now(server->loop);
  return true;
}

bool Connection::startOn(IoWorker& w, uv_stream_t* server, const tls::TlsContext* tls, const WebSocketConfig* ws) {
  last_rx_ms = accepted_ms = uv_now(server->loop);
  // libuv accepts onto a handle of this loop: the socket is duplicated for
  // the worker, and this loop's handle closed.
  auto* h = new uv_tcp_t;
  int fd = -1;
  int r = uv_tcp_init(server->loop, h);
  if (r == 0) {
    r = uv_accept(server, reinterpret_cast<uv_stream_t*>(h));
    uv_os_fd_t os_fd;
    if (r == 0) r = uv_fileno(reinterpret_cast<uv_handle_t*>(h), &os_fd);
    if (r == 0 && (fd = dup(os_fd)) < 0) r = uv_translate_sys_error(errno);
    uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) { delete reinterpret_cast<uv_tcp_t*>(x); });
  } else {
    delete h;
  }
  if (r != 0) {
    LOG_WARN("accept failed: %s", uv_strerror(r));
    beginClose();
    onStreamClosed();  // there was never a socket: frees this now
    return false;
  }
  layer_ = std::make_unique<RemoteStream>(w, fd, tls, ws);
  layer_->setHandler(this);
  remote_ = true;
  return true;
}

uint8_t* Connection::readBuffer(size_t& len, bool transformed) {
  // A partial packet is completed in the connection's own buffer; otherwise
  // read into the loop's shared buffer and decode in place, so idle
  // connections hold no receive buffer at all. Bytes a layer transforms
  // (TLS) always go to the shared buffer.
  if (!transformed && buffered() > 0) {
    reading_into_decoder_ = true;
    return decoder().writeSpace(16 * 1024, len);
  }
  reading_into_decoder_ = false;
  return broker_.sharedReadBuffer(len);
}

void Connection::stash(const uint8_t* data, size_t len) {
  if (len == 0) return;
  size_t avail;
  uint8_t* dst = decoder().writeSpace(len, avail);
  std::memcpy(dst, data, len);
  decoder().commit(len);
}

void Connection::pauseInput() {
  input_paused_ = true;
  if (remote_) remote().setReading(false);
  else tcp_.pauseReading();
}

bool Connection::syncInput(std::function<void()> done) {
  if (!remote_ || closing_) return false;
  return remote().sync(std::move(done));
}

void Connection::resumeInput() {
  if (!input_paused_) return;
  input_paused_ = false;
  if (closing_) return;
  if (remote_) remote().setReading(true);
  else tcp_.resumeReading();
  if (buffered() > 0) processBuffered();
}

bool Connection::onStreamData(const uint8_t* data, size_t len) {
  if (closing_) return false;
  last_rx_ms = uv_now(broker_.loop());
  broker_.countBytes(len, 0);
  if (input_paused_) {
    // Already read (or decrypted) when the input was paused: kept.
    if (reading_into_decoder_) decoder().commit(len);
    else stash(data, len);
    return true;
  }
  if (reading_into_decoder_) {
    // The socket read straight into the decoder's free tail.
    decoder().commit(len);
    processBuffered();
  } else if (buffered() > 0) {
    // Bytes from a layer (TLS, WebSocket), with a packet already partly
    // buffered: complete that packet in the decoder with the bytes it still
    // needs, then decode the rest where it lies, as the plain path does
    // (copying all of them would copy every byte of a stream of packets
    // that straddle reads).
    size_t pos = 0;
    while (pos < len && buffered() > 0 && !closing_) {
      const size_t n = std::min(len - pos, decoder().missing());
      size_t avail;
      std::memcpy(decoder().writeSpace(n, avail), data + pos, n);
      decoder().commit(n);
      pos += n;
      processBuffered();
    }
    if (pos < len && !closing_) processShared(data + pos, len - pos);
  } else {
    processShared(data, len);
  }
  return !closing_;
}

void Connection::onStreamActivity() { last_rx_ms = uv_now(broker_.loop()); }

void Connection::onStreamInputDone() {
  // A subscriber whose acknowledgements have just refilled its window (the
  // next messages of its queue went into its output) gets no more QoS 1/2
  // PUBLISH until it answers again. Its output goes now rather than at the
  // end of the turn, so that it can answer while the turn goes on, and its
  // answer is read in the next turn rather than the one after. Under load
  // that is most of a queued message's wait (bench/README.md, "A full
  // window's output goes at once"). On this loop's own sockets, plain,
  // TLS or WebSocket, this is called once the read has gone up through
  // every layer.
  //
  // On a worker loop's socket it is called after each read the worker
  // passed on. Such a subscriber, its window full while messages wait for
  // it, is moved to the urgent lane (src/transport/io_workers.h): its reads
  // are handled ahead of other connections' input, and its output goes to
  // the worker at once rather than in the main loop's turn's batch.
  const bool full = !closing_ && session && session->windowFree() == 0;
  if (remote_) {
    if (remote().inUrgentLane()) broker_.countUrgentRead();
    remote().setUrgent(full && session->windowHolds());
  }
  if (dirty_ && full && (!remote_ || remote().urgent())) flush();
  broker_.onInputDone(*this);
}

void Connection::onStreamEnd(StreamEnd why) {
  // A layer's protocol error leaves its alert to be flushed first.
  if (why == StreamEnd::Failed) {
    closeAfterFlush();
  } else {
    // Nothing can be read any more: once a write in flight is done, close
    // rather than half-close and wait for a close that has happened.
    peer_closed_ = true;
    beginClose();
  }
}

void Connection::processShared(const uint8_t* data, size_t len) {
  size_t pos = 0;
  // [MQTT-3.1.0-1] the first packet must be CONNECT: a stream that starts
  // with anything else is closed at its first byte, without waiting for
  // (and buffering) the body it announces.
  if (!connected && !bridge && len > 0 && (data[0] >> 4) != static_cast<uint8_t>(mqtt::PacketType::Connect) &&
      buffered() == 0) {
    mqtt::Frame f;
    f.type = static_cast<mqtt::PacketType>(data[0] >> 4);
    broker_.onFrame(*this, f);
    return;
  }
  while (pos < len && !closing_) {
    // Paused (a CONNECT waits for its password check, or for the input of
    // its session's old connection): the rest waits with it. Checked before
    // each packet, the first too: a packet completed from the decoder's
    // buffer (onStreamData) may have paused the input before this call.
    if (input_paused_) return stash(data + pos, len - pos);
    mqtt::Frame f;
    auto st = mqtt::peekFrame(data + pos, len - pos, broker_.maxPacketSizeFor(*this), f);
    if (st == mqtt::FrameStatus::Ok) {
      pos += f.total_len;
      if (!handleFrame(f)) return;
      continue;
    }
    if (st == mqtt::FrameStatus::Incomplete) {
      // Keep the tail for the next read.
      size_t avail;
      uint8_t* p = decoder().writeSpace(len - pos, avail);
      std::memcpy(p, data + pos, len - pos);
      decoder().commit(len - pos);
      return;
    }
    broker_.onFramingError(*this, st == mqtt::FrameStatus::TooLarge);
    return;
  }
}

void Connection::processBuffered() {
  while (!closing_ && !input_paused_) {
    mqtt::Frame f;
    auto st = decoder().next(f);
    if (st == mqtt::FrameStatus::Ok) {
      if (!handleFrame(f)) return;
      continue;
    }
    if (st == mqtt::FrameStatus::Incomplete) break;
    broker_.onFramingError(*this, st == mqtt::FrameStatus::TooLarge);
    return;
  }
  // Nothing partial left: give the buffer back.
  if (decoder_->buffered() == 0) decoder_.reset();
  else decoder_->compact();
}

bool Connection::handleFrame(const mqtt::Frame& f) {
  broker_.onFrame(*this, f);
  return !closing_;
}

void Connection::markDirty() {
  if (!dirty_ && !handle_closed_) {
    dirty_ = true;
    broker_.scheduleFlush(this);
  }
}

void Connection::flush() {
  dirty_ = false;
  if (handle_closed_) return;
  // The one output path: the stack takes the plaintext (TLS encrypts it
  // even while a write is in flight; TCP writes it now, or leaves it here
  // until the write in flight is done).
  const size_t before = out_.size();
  const Stream::Write w = layer_ ? layer_->write(out_) : tcp_.write(out_);
  // What the stack took (nothing, while a TCP write is in flight).
  if (w != Stream::Write::Failed) broker_.countBytes(0, before - out_.size());
  switch (w) {
    case Stream::Write::InFlight:
      break;  // onStreamWritable() goes on
    case Stream::Write::Failed:
      out_.clear();
      beginClose();
      return;
    case Stream::Write::Nothing:
      if (closing_ && !lingering_) endOutput();
      break;
    case Stream::Write::Written:
      if (closing_ && !lingering_)
        endOutput();
      else
        notifyWritable();
      break;
  }
  if (out_.empty() && out_.capacity() > 64 * 1024) std::string().swap(out_);
}

bool Connection::writeShared(const SharedPacket& p, uint16_t packet_id) {
  // Bytes waiting here (or held for a commit) go first: this one would
  // pass them.
  if (closing_ || handle_closed_ || !out_.empty() || holding()) return false;
  if (!remote().writeShared(p, packet_id)) return false;
  broker_.countBytes(0, p.bytes.size());
  // Nothing marks the connection dirty on this path: the broker-wide
  // output budget counts these bytes when this client's next QoS 0 message
  // finds it over the high-water mark (OutputBudget::qos0Allowed), or when
  // its socket takes them.
  return true;
}

void Connection::onStreamWritable(bool ok) {
  if (!ok) {
    out_.clear();
    beginClose();
    return;
  }
  if (!out_.empty() || (layer_ && layer_->pendingBytes() > 0)) {
    flush();
  } else if (closing_ && !lingering_) {
    endOutput();
  }
  broker_.accountOutput(*this);
  // Whether or not more output followed, the kernel took a large write:
  // messages that waited for room may go now. (Under a steady QoS 0 stream
  // the buffer is never empty when a write completes; waiting for "empty"
  // stranded QoS 1/2 messages in the session queue.)
  if (!closing_) notifyWritable();
}

void Connection::notifyWritable() {
  if (want_writable && !closing_ && pendingOutput() < kOutputHighWater) {
    want_writable = false;
    broker_.onWritable(*this);
  }
}

void Connection::holdSince(OutMark mark, uint64_t ticket, const AckGatePtr& gate, const AckGatePtr& required) {
  if (!held_) held_ = std::make_unique<HeldOutput>();
  held_->holdSince(mark, out_, ticket, gate, required);
}

bool Connection::release(uint64_t committed) {
  if (!held_) return false;
  if (held_->release(committed, out_)) markDirty();
  if (!held_->empty()) return true;
  held_.reset();
  return false;
}

void Connection::setClosing() {
  closing_ = true;
  // Reading goes on (and discards) until the close, see endOutput(); TLS
  // sends close_notify after the last packet.
  top().windDown();
}

void Connection::closeAfterFlush() {
  if (closing_) return;
  setClosing();
  broker_.onConnectionLost(*this);
  markDirty();
}

void Connection::endOutput() {
  if (handle_closed_ || half_closed_) return;
  // The last packet (DISCONNECT, or a CONNACK refusing the client) is
  // written. Closing now would make the kernel answer the client's
  // in-flight bytes with a reset, and a client still sending sees a broken
  // pipe instead of our reason code. So: half-close (FIN after the data),
  // read and discard until the client closes, and close after
  // kHalfCloseLingerMs at the latest (the broker's connection timer).
  if (broker_.shuttingDown() || peer_closed_) return beginClose();  // no timers run any more; no peer
  half_closed_ = true;
  last_rx_ms = uv_now(broker_.loop());
  // The client's close (EOF) or the connection timer's deadline ends it.
  if (!top().shutdown()) beginClose();
}

void Connection::closeWhenPeerDoes(uint64_t now_ms) {
  if (closing_) return;
  // The client said DISCONNECT and closes its end next: let it close first,
  // so that the TIME_WAIT state stays on its side. A broker that closes
  // first collects a TIME_WAIT socket per client reconnect, which on one
  // host (or behind a NAT) exhausts the ports new connections need. The
  // connection timer closes it anyway if the client does not, after a second.
  setClosing();
  lingering_ = true;
  last_rx_ms = now_ms;
  broker_.onConnectionLost(*this);
  markDirty();
}

void Connection::disconnect(mqtt::Reason reason) {
  if (closing_) return;
  if (connected && version == mqtt::Version::V5) {
    mqtt::Disconnect d;
    d.reason = reason;
    mqtt::encode(d, version, out_);  // not behind held output: it is the last word
    markDirty();
  }
  closeAfterFlush();
}

void Connection::beginClose() {
  if (handle_closed_) return;
  lingering_ = false;  // closing for real now
  if (!closing_) {
    setClosing();
    broker_.onConnectionLost(*this);
  }
  // With a write in flight, onStreamWritable() finishes: the rest of the
  // output, then the half-close (endOutput).
  if (top().writing()) return;
  handle_closed_ = true;
  top().close();
}

void Connection::onStreamClosed() {
  // Frees this connection, and the stack with it.
  broker_.onConnectionClosed(this);
}

}  // namespace petrel
