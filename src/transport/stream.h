// src/transport/stream.h — the byte stream the MQTT codec sits on, and the
// interface of its owner.
//
// A stack of streams carries one connection: a TcpStream at the bottom (the
// socket), layers above it that transform bytes (TlsStream, WebSocketStream
// on TCP or on TLS). Each stream has one handler: the layer
// above it, or at the top the owner (Connection, a bridge, a test). Data goes
// up through StreamHandler::onStreamData as plaintext; output goes down
// through Stream::write.
//
// Output is flushed by the owner, once per loop turn: write() hands down a
// std::string the owner has been encoding into. No layer copies plaintext
// it does not transform: the TCP stream writes straight from that string
// (uv_try_write) and, when the kernel does not take all of it, keeps the rest
// by swapping storage with it rather than copying. While a write is in
// flight the TCP stream takes nothing more: the owner's buffer keeps growing
// and goes out in one write when the handler hears onStreamWritable().
//
// Calls from the loop reach a stream through libuv's C callbacks; a layer
// costs one virtual call per read and per flush.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace petrel::tls {
class TlsSession;
}

namespace petrel {

// Why input ended.
enum class StreamEnd : uint8_t {
  // End of stream, a read error, or the peer's TLS close_notify: nothing
  // more can be read, and nothing is worth writing.
  PeerClosed,
  // A protocol error of a layer (TLS, WebSocket), or a layer's closing
  // handshake (a WebSocket close frame from the peer): the layer has queued
  // its last word (an alert, a close frame, an HTTP refusal); the owner
  // flushes it, then closes.
  Failed,
};

// The owner of a stream, or the layer above it.
class StreamHandler {
 public:
  // Where the bottom stream reads its next bytes to: the handler's own
  // buffer (the decoder's free tail, when a packet is partly buffered), or
  // the loop's shared read buffer, so that an idle connection holds none.
  // `transformed`: a layer in between (TLS) turns these bytes into others,
  // so they must not land in the handler's decode space.
  virtual uint8_t* readBuffer(size_t& len, bool transformed) = 0;
  // Plaintext from the peer; valid during the call only (it may be the
  // buffer readBuffer() gave). False: stop delivering for this read (the
  // owner is closing).
  virtual bool onStreamData(const uint8_t* data, size_t len) = 0;
  // Bytes arrived that a layer consumed without passing data up yet (TLS
  // handshake, a partial record): the peer is alive. onStreamData implies it.
  virtual void onStreamActivity() {}
  // Everything one read from the socket brought has gone up through every
  // layer (after the read's last onStreamData, if it brought any: a read of
  // TLS handshake records brings none): no layer is inside its read now, so
  // the owner may write at once. Not called after a read whose
  // onStreamData answered false.
  virtual void onStreamInputDone() {}
  // A layer has bytes of its own to send (handshake records, alerts):
  // call write() soon, typically at the end of the loop turn.
  virtual void onStreamOutput() {}
  // The write that was in flight has ended (ok: the kernel took all of it;
  // otherwise it failed, or the stream was closed under it). The owner's
  // output may go now.
  virtual void onStreamWritable(bool ok) = 0;
  // Input ended; see StreamEnd. The stream is still open: close() it.
  virtual void onStreamEnd(StreamEnd why) = 0;
  // After close(): the socket is released. The owner may free the stack now
  // (from inside this call; nothing below touches itself afterwards).
  virtual void onStreamClosed() = 0;
  // Client mode: the outgoing connection is ready for data (after the TLS
  // handshake, on a TLS stream), or failed with a libuv status; on failure
  // the owner close()s the stream.
  virtual void onStreamConnected(int /*status*/) {}

 protected:
  ~StreamHandler() = default;
};

class Stream {
 public:
  enum class Write : uint8_t {
    Nothing,   // nothing to send, and nothing in flight
    Written,   // the kernel took everything at once
    InFlight,  // a write is in flight; onStreamWritable() follows
    Failed,    // a write error (logged): the stream is unusable, close it
  };

  virtual ~Stream() = default;
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  void setHandler(StreamHandler* h) { handler_ = h; }

  // Hands the bytes of `data` down and tries to write them now. A stream
  // takes all of them, leaving `data` empty (its storage may be exchanged
  // for the stream's), except while a write is in flight on a stream that
  // keeps no queue of its own (TCP): then it takes nothing and answers
  // InFlight, and the owner writes again on onStreamWritable(). An empty
  // `data` still sends what a layer has of its own (handshake records).
  virtual Write write(std::string& data) = 0;
  // A write is in flight: the kernel has not yet taken all bytes handed down.
  virtual bool writing() const = 0;
  // Bytes handed down but not yet taken by the kernel (flow control).
  virtual size_t pendingBytes() const = 0;
  // The owner is closing: from now on input is read and discarded (so the
  // peer's close is still seen), and a layer that has a closing message of
  // its own (TLS close_notify) sends it after the data of every later
  // write().
  virtual void windDown() = 0;
  // Half-close once the output handed down is written (TCP FIN; TLS first
  // queues close_notify). Call when write() answered Written or Nothing.
  // False if the socket refused (close it).
  virtual bool shutdown() = 0;
  // Closes the socket now; the handler hears onStreamClosed() once it is
  // released, after onStreamWritable(false) for a write in flight.
  virtual void close() = 0;

  // "address:port" of the peer, for logs.
  virtual std::string peer() const = 0;
  // False until a layer's handshake is complete.
  virtual bool handshakeDone() const { return true; }
  // The TLS session of the stack, if a layer is TLS.
  virtual tls::TlsSession* tlsSession() { return nullptr; }

 protected:
  StreamHandler* handler_ = nullptr;
};

// A layer on another stream (TLS, WebSocket): the handler of the stream
// below, taking over its handler slot (`lower` must outlive the layer).
// What a layer does not transform passes straight through: closing, the
// peer's name, the TLS session, and the events of the stream below other
// than data.
class LayerStream : public Stream, protected StreamHandler {
 public:
  bool writing() const override { return lower_.writing(); }
  void close() override { lower_.close(); }
  std::string peer() const override { return lower_.peer(); }
  tls::TlsSession* tlsSession() override { return lower_.tlsSession(); }

 protected:
  explicit LayerStream(Stream& lower) : lower_(lower) { lower_.setHandler(this); }

  void onStreamActivity() override { handler_->onStreamActivity(); }
  void onStreamInputDone() override { handler_->onStreamInputDone(); }
  void onStreamOutput() override { handler_->onStreamOutput(); }
  void onStreamWritable(bool ok) override { handler_->onStreamWritable(ok); }
  void onStreamEnd(StreamEnd why) override { handler_->onStreamEnd(why); }
  void onStreamClosed() override { handler_->onStreamClosed(); }

  Stream& lower_;
};

}  // namespace petrel
