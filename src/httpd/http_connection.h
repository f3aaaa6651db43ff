// src/httpd/http_connection.h — one connection of the HTTP endpoint, on a
// stream stack (TcpStream, and TlsStream for HTTPS) like an MQTT
// connection but with its own small protocol: read a request head (at most
// HttpServer::kMaxHead bytes), answer it (HttpServer::answer), write the
// answer, and then read the next one or close.
//
// Closing after a final answer (400, Connection: close) half-closes after
// the last byte and discards input until the peer closes or kLingerMs
// pass, so a client still sending sees the answer rather than a reset. A
// head that has not arrived within kRequestTimeoutMs (the TLS handshake
// included) closes the connection.
#pragma once

#include <memory>
#include <string>

#include "src/timers/timer_queue.h"
#include "src/transport/stream.h"
#include "src/transport/tcp_stream.h"

namespace petrel {

class HttpServer;
namespace tls {
class TlsContext;
}

class HttpConnection final : private StreamHandler {
 public:
  explicit HttpConnection(HttpServer& server);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Accepts from `listener` (over TLS when `tls` is set) and starts
  // reading; on failure the connection closes (and frees itself).
  void start(uv_stream_t* listener, const tls::TlsContext* tls);
  // Writes the output of this loop turn (HttpServer calls it).
  void flush();
  // Closes now (server shutdown, timeouts).
  void close();

 private:
  enum class State : uint8_t {
    Reading,  // waiting for (the rest of) a request head
    Writing,  // an answer is being written; the next head waits
    Closing,  // the last answer is being written, then half-close
    Linger,   // half-closed: waiting for the peer to close
  };

  // StreamHandler
  uint8_t* readBuffer(size_t& len, bool transformed) override;
  bool onStreamData(const uint8_t* data, size_t len) override;
  void onStreamOutput() override { markDirty(); }
  void onStreamWritable(bool ok) override;
  void onStreamEnd(StreamEnd why) override;
  void onStreamClosed() override;

  Stream& top() { return tls_ ? *tls_ : static_cast<Stream&>(tcp_); }
  void process();
  void respond(std::string response, bool close);
  void written();
  void markDirty();
  void arm(uint64_t ms);
  static void onTimer(Timer& t);

  HttpServer& server_;
  TcpStream tcp_;
  std::unique_ptr<Stream> tls_;
  std::string in_;   // bytes of the next request head
  std::string out_;  // the answer not yet handed to the stack
  Timer timer_;
  State state_ = State::Reading;
  bool dirty_ = false;
  bool closed_ = false;
};

}  // namespace petrel
