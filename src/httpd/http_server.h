// src/httpd/http_server.h — the operators' HTTP endpoint (config `http:`):
// a listener on the broker's loop, its connections (http_connection.h) and
// what it serves:
//
//   /metrics        Prometheus text exposition
//   /healthz        200 while the loop runs
//   /readyz         200 when the store is open and the listeners are up, else 503
//   /api/v1/stats   JSON for the status page
//   /, /status.js, /status.css   the status page (status_page.h)
//
// GET and HEAD only, no request bodies, one request at a time per
// connection (keep-alive allowed), a head of at most kMaxHead bytes that
// must arrive within kRequestTimeoutMs; anything else gets 400 and the
// connection closes. With `basic_auth`, every path but /healthz and
// /readyz needs a user of auth.password_file (failed checks are limited to
// kAuthFailuresPerSecond, so guessing cannot keep the loop busy hashing).
//
// The server knows nothing of the broker: its owner hands it the
// Endpoints (the renderings, the readiness check, the password check).
//
// May call: transport/ streams (TcpStream, TlsStream), http/ (request
// heads), tls/ (its context), the timer facility.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "src/config/config.h"
#include "src/http/request.h"

namespace petrel {

class HttpConnection;
class LoopTimers;
namespace tls {
class TlsContext;
}

class HttpServer {
 public:
  struct Endpoints {
    std::function<std::string()> metrics;  // /metrics
    std::function<std::string()> stats;    // /api/v1/stats
    std::function<bool(std::string& why)> ready;
    std::function<bool(std::string_view user, std::string_view password)> check_password;
  };

  static constexpr size_t kMaxHead = 8192;
  static constexpr uint64_t kRequestTimeoutMs = 10000;
  static constexpr uint64_t kLingerMs = 2000;
  static constexpr size_t kMaxConnections = 64;
  static constexpr uint32_t kAuthFailuresPerSecond = 10;

  HttpServer(uv_loop_t* loop, LoopTimers& timers, const HttpConfig& cfg, Endpoints endpoints);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Loads the TLS context (if any) and listens. False with `err` on failure.
  bool start(std::string& err);
  // Stops listening and closes every connection.
  void stop();
  bool listening() const { return listener_ != nullptr; }
  // Reads the certificate and key again (SIGHUP); a failure keeps the old.
  void reloadTls(const char* why);

  // The whole response to one request head; `close` is set when the
  // connection must close after it.
  std::string answer(const http::Request& req, bool& close);
  // The response to input that is not a request we take (closing).
  static std::string badRequest(std::string_view why);

  // For HttpConnection.
  LoopTimers& timers() { return timers_; }
  uint8_t* readBuffer(size_t& n) {
    n = read_buf_.size();
    return read_buf_.data();
  }
  void scheduleFlush(HttpConnection* c) { dirty_.push_back(c); }
  void onClosed(HttpConnection* c);
  size_t connections() const { return connections_.size(); }

 private:
  static void onConnection(uv_stream_t* server, int status);
  static void onCheck(uv_check_t* h);
  void flushAll();
  // Basic authentication: true if the request may go on; otherwise
  // `response` is the 401 (or 429).
  bool authorized(const http::Request& req, bool head, bool close, std::string& response);

  uv_loop_t* loop_;
  LoopTimers& timers_;
  const HttpConfig& cfg_;
  Endpoints endpoints_;
  std::unique_ptr<tls::TlsContext> tls_;
  uv_tcp_t* listener_ = nullptr;  // freed by its close callback
  uv_check_t check_;
  bool check_started_ = false;
  std::vector<uint8_t> read_buf_;
  std::vector<HttpConnection*> connections_;  // owned; freed in onClosed
  std::vector<HttpConnection*> dirty_;        // have output to write this turn
  uint64_t auth_window_ms_ = 0;
  uint32_t auth_failures_ = 0;
};

}  // namespace petrel
