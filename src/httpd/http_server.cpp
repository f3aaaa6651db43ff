#include "src/httpd/http_server.h"

#include "src/httpd/http_connection.h"
#include "src/httpd/status_page.h"
#include "src/timers/loop_timers.h"
#include "src/util/log.h"
#include "tls/crypto.h"
#include "tls/tls_context.h"

namespace petrel {

namespace {

constexpr size_t kReadBufferSize = 16 * 1024;

const char* reasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

// A complete response. HEAD gets the head of the GET answer: the same
// Content-Length, no body.
std::string reply(int status, std::string_view type, std::string_view body, bool head, bool close,
                  std::vector<std::string> headers = {}) {
  headers.push_back("Content-Type: " + std::string(type));
  headers.emplace_back("Cache-Control: no-store");
  headers.emplace_back("X-Content-Type-Options: nosniff");
  if (close) headers.emplace_back("Connection: close");
  if (!head) return http::response(status, reasonPhrase(status), headers, body);
  headers.push_back("Content-Length: " + std::to_string(body.size()));
  return http::response(status, reasonPhrase(status), headers, {}, false);
}

constexpr std::string_view kText = "text/plain; charset=utf-8";

}  // namespace

HttpServer::HttpServer(uv_loop_t* loop, LoopTimers& timers, const HttpConfig& cfg, Endpoints endpoints)
    : loop_(loop), timers_(timers), cfg_(cfg), endpoints_(std::move(endpoints)) {}

HttpServer::~HttpServer() { stop(); }

bool HttpServer::start(std::string& err) {
  const std::string name = cfg_.address + ":" + std::to_string(cfg_.port);
  if (cfg_.tls) {
    std::string e;
    tls_ = tls::TlsContext::create(*cfg_.tls, e);
    if (!tls_) {
      err = "http " + name + ": TLS: " + e;
      return false;
    }
  }
  sockaddr_storage addr{};
  if (uv_ip4_addr(cfg_.address.c_str(), cfg_.port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(cfg_.address.c_str(), cfg_.port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0) {
    err = "http " + name + ": not an IP address";
    return false;
  }
  auto* server = new uv_tcp_t;
  uv_tcp_init(loop_, server);
  server->data = this;
  int rc = uv_tcp_bind(server, reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(server), 128, &HttpServer::onConnection);
  if (rc != 0) {
    err = "http " + name + ": " + uv_strerror(rc);
    uv_close(reinterpret_cast<uv_handle_t*>(server), [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    return false;
  }
  listener_ = server;
  read_buf_.resize(kReadBufferSize);
  uv_check_init(loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, &HttpServer::onCheck);
  check_started_ = true;
  LOG_NOTICE("HTTP endpoint on %s%s%s", name.c_str(), tls_ ? " (TLS)" : "",
             cfg_.basic_auth ? ", basic authentication" : "");
  if (!isLoopbackAddress(cfg_.address) && !cfg_.basic_auth)
    LOG_WARN("HTTP endpoint %s is reachable beyond this host without authentication (http.basic_auth)",
             name.c_str());
  return true;
}

void HttpServer::stop() {
  if (listener_) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_), [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    listener_ = nullptr;
  }
  // Each frees itself once its socket is closed (onClosed).
  const std::vector<HttpConnection*> conns = connections_;
  for (HttpConnection* c : conns) c->close();
  if (check_started_) {
    check_started_ = false;
    uv_check_stop(&check_);
    uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  }
}

void HttpServer::reloadTls(const char* why) {
  if (!tls_) return;
  std::string err;
  if (tls_->reload(err))
    LOG_NOTICE("HTTP endpoint: TLS files reloaded (%s)", why);
  else
    LOG_ERROR("HTTP endpoint: TLS reload (%s) refused, the previous certificate stays in use: %s", why, err.c_str());
}

void HttpServer::onConnection(uv_stream_t* listener, int status) {
  auto* s = static_cast<HttpServer*>(listener->data);
  if (status < 0) {
    LOG_WARN("HTTP accept failed: %s", uv_strerror(status));
    return;
  }
  auto* c = new HttpConnection(*s);
  s->connections_.push_back(c);
  c->start(listener, s->tls_.get());
  if (s->connections_.size() > kMaxConnections) {
    LOG_NOTICE("HTTP endpoint: more than %zu connections, closing the newest", kMaxConnections);
    c->close();
  }
}

void HttpServer::onClosed(HttpConnection* c) {
  for (size_t i = 0; i < connections_.size(); ++i) {
    if (connections_[i] != c) continue;
    connections_[i] = connections_.back();
    connections_.pop_back();
    break;
  }
  for (auto& d : dirty_)
    if (d == c) d = nullptr;
  delete c;
}

void HttpServer::onCheck(uv_check_t* h) { static_cast<HttpServer*>(h->data)->flushAll(); }

void HttpServer::flushAll() {
  // Writing can answer the next request at once (and make it dirty again).
  while (!dirty_.empty()) {
    std::vector<HttpConnection*> batch;
    batch.swap(dirty_);
    for (HttpConnection* c : batch)
      if (c) c->flush();
  }
}

std::string HttpServer::badRequest(std::string_view why) {
  std::string body = "bad request: ";
  body.append(why);
  body += '\n';
  return reply(400, kText, body, false, true);
}

bool HttpServer::authorized(const http::Request& req, bool head, bool close, std::string& response) {
  const std::string* auth = req.header("Authorization");
  std::string user, password;
  bool given = false;
  if (auth && auth->size() > 6 && http::equalsIgnoreCase(std::string_view(*auth).substr(0, 6), "Basic ")) {
    std::string decoded;
    if (tls::base64Decode(std::string_view(*auth).substr(6), decoded)) {
      const size_t colon = decoded.find(':');
      if (colon != std::string::npos) {
        user = decoded.substr(0, colon);
        password = decoded.substr(colon + 1);
        given = true;
      }
    }
  }
  if (given) {
    const uint64_t now = timers_.now();
    if (now - auth_window_ms_ >= 1000) {
      auth_window_ms_ = now;
      auth_failures_ = 0;
    }
    if (auth_failures_ >= kAuthFailuresPerSecond) {
      response = reply(429, kText, "too many failed logins, try again in a second\n", head, close,
                       {"Retry-After: 1"});
      return false;
    }
    if (endpoints_.check_password && endpoints_.check_password(user, password)) return true;
    ++auth_failures_;
    for (char& ch : user)
      if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7F) ch = '?';  // one log line
    LOG_NOTICE("HTTP endpoint: wrong user name or password for '%s'", user.c_str());
  }
  response = reply(401, kText, "authentication required\n", head, close,
                   {"WWW-Authenticate: Basic realm=\"petrel\", charset=\"UTF-8\""});
  return false;
}

std::string HttpServer::answer(const http::Request& req, bool& close) {
  close = req.headerHasToken("Connection", "close") ||
          (req.minor_version == 0 && !req.headerHasToken("Connection", "keep-alive"));
  // HTTP/1.1 requires Host (RFC 9112 §3.2); bodies are not taken, so a
  // request that announces one cannot be followed on this connection.
  if (req.minor_version >= 1 && !req.header("Host")) {
    close = true;
    return reply(400, kText, "bad request: no Host header\n", req.method == "HEAD", true);
  }
  const std::string* length = req.header("Content-Length");
  if (req.header("Transfer-Encoding") || (length && *length != "0")) {
    close = true;
    return reply(400, kText, "bad request: request bodies are not accepted\n", req.method == "HEAD", true);
  }
  const bool head = req.method == "HEAD";
  if (req.method != "GET" && !head)
    return reply(405, kText, "method not allowed\n", false, close, {"Allow: GET, HEAD"});

  const std::string_view path = req.path();
  if (path == "/healthz") return reply(200, kText, "ok\n", head, close);
  if (path == "/readyz") {
    std::string why;
    if (endpoints_.ready && endpoints_.ready(why)) return reply(200, kText, "ready\n", head, close);
    return reply(503, kText, "not ready: " + why + "\n", head, close);
  }
  std::string denied;
  if (cfg_.basic_auth && !authorized(req, head, close, denied)) return denied;
  if (path == "/metrics")
    return reply(200, "text/plain; version=0.0.4; charset=utf-8", endpoints_.metrics ? endpoints_.metrics() : "",
                 head, close);
  if (path == "/api/v1/stats")
    return reply(200, "application/json", endpoints_.stats ? endpoints_.stats() : "{}", head, close);
  // The status page: everything from this server, nothing inline.
  const std::vector<std::string> page_headers = {
      "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'", "Referrer-Policy: no-referrer"};
  if (path == "/" || path == "/index.html")
    return reply(200, "text/html; charset=utf-8", kStatusHtml, head, close, page_headers);
  if (path == "/status.js")
    return reply(200, "text/javascript; charset=utf-8", kStatusJs, head, close, page_headers);
  if (path == "/status.css") return reply(200, "text/css; charset=utf-8", kStatusCss, head, close, page_headers);
  return reply(404, kText, "not found\n", head, close);
}

}  // namespace petrel
