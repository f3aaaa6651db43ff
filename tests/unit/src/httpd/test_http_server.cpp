// The HTTP endpoint's answers (HttpServer::answer), without sockets: the
// routes, methods, keep-alive, refused requests and basic authentication.
#include <gtest/gtest.h>

#include <uv.h>

#include "src/httpd/http_server.h"
#include "src/timers/loop_timers.h"
#include "tls/crypto.h"

namespace petrel {
namespace {

struct Loop {
  Loop() { uv_loop_init(&loop_); }
  uv_loop_t loop_;
};

class HttpAnswers : public ::testing::Test, protected Loop {
 protected:
  HttpAnswers() : timers_(&loop_) {}
  ~HttpAnswers() override {
    server_.reset();
    timers_.close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }

  HttpServer& server() {
    if (!server_) {
      HttpServer::Endpoints e;
      e.metrics = [] { return std::string("# HELP m M.\n# TYPE m gauge\nm 1\n"); };
      e.stats = [] { return std::string("{\"ok\":true}"); };
      e.ready = [this](std::string& why) {
        why = "the store is not open";
        return ready_;
      };
      e.check_password = [](std::string_view u, std::string_view p) { return u == "op" && p == "s3cret:x"; };
      server_ = std::make_unique<HttpServer>(&loop_, timers_, cfg_, e);
    }
    return *server_;
  }
  std::string get(const std::string& head, bool& close) {
    http::Request r;
    size_t used = 0;
    std::string err;
    EXPECT_EQ(http::parseRequest(head, HttpServer::kMaxHead, r, used, err), http::Parse::Done) << err;
    return server().answer(r, close);
  }
  std::string get(const std::string& head) {
    bool close = false;
    return get(head, close);
  }
  static std::string basic(const std::string& user_password) {
    return "Authorization: Basic " + tls::base64Encode(user_password) + "\r\n";
  }
  static std::string body(const std::string& response) {
    const size_t p = response.find("\r\n\r\n");
    return p == std::string::npos ? "" : response.substr(p + 4);
  }

  LoopTimers timers_;
  HttpConfig cfg_;
  bool ready_ = true;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpAnswers, Routes) {
  bool close = true;
  std::string r = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", close);
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos);
  EXPECT_EQ(body(r), "# HELP m M.\n# TYPE m gauge\nm 1\n");
  EXPECT_FALSE(close);  // HTTP/1.1: keep-alive

  r = get("GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(r.find("Content-Type: application/json\r\n"), std::string::npos);
  EXPECT_EQ(body(r), "{\"ok\":true}");

  EXPECT_EQ(body(get("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")), "ok\n");
  EXPECT_EQ(get("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);
  ready_ = false;
  r = get("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u);
  EXPECT_EQ(body(r), "not ready: the store is not open\n");

  r = get("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(r.find("Content-Type: text/html"), std::string::npos);
  EXPECT_NE(r.find("Content-Security-Policy: default-src 'self'"), std::string::npos);
  EXPECT_NE(body(r).find("<script src=\"/status.js\""), std::string::npos);
  EXPECT_NE(body(get("GET /status.js HTTP/1.1\r\nHost: x\r\n\r\n")).find("/api/v1/stats"), std::string::npos);
  EXPECT_NE(get("GET /status.css HTTP/1.1\r\nHost: x\r\n\r\n").find("text/css"), std::string::npos);
  EXPECT_EQ(get("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(get("GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);
}

TEST_F(HttpAnswers, HeadHasTheLengthButNoBody) {
  const std::string g = get("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string h = get("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(h.find("Content-Length: 3\r\n"), std::string::npos);
  EXPECT_EQ(body(h), "");
  EXPECT_EQ(g.substr(0, g.size() - 3), h);
}

TEST_F(HttpAnswers, MethodsVersionsAndBodies) {
  bool close = false;
  std::string r = get("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", close);
  EXPECT_EQ(r.rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_NE(r.find("Allow: GET, HEAD\r\n"), std::string::npos);

  r = get("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", close);
  EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_TRUE(close);
  close = false;
  get("GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", close);
  EXPECT_TRUE(close);

  close = false;
  r = get("GET /metrics HTTP/1.1\r\n\r\n", close);  // no Host
  EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_TRUE(close);

  close = false;
  r = get("GET /metrics HTTP/1.0\r\n\r\n", close);  // 1.0 closes unless asked
  EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_TRUE(close);
  EXPECT_NE(r.find("Connection: close\r\n"), std::string::npos);
  get("GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", close);
  EXPECT_FALSE(close);
  get("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", close);
  EXPECT_TRUE(close);
}

TEST_F(HttpAnswers, BadRequestCloses) {
  const std::string r = HttpServer::badRequest("not an HTTP request");
  EXPECT_EQ(r.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u);
  EXPECT_NE(r.find("Connection: close\r\n"), std::string::npos);
  EXPECT_EQ(body(r), "bad request: not an HTTP request\n");
}

TEST_F(HttpAnswers, BasicAuthentication) {
  cfg_.basic_auth = true;
  std::string r = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 401 Unauthorized\r\n", 0), 0u);
  EXPECT_NE(r.find("WWW-Authenticate: Basic realm=\"petrel\""), std::string::npos);
  EXPECT_EQ(get("GET /metrics HTTP/1.1\r\nHost: x\r\n" + basic("op:wrong") + "\r\n").rfind("HTTP/1.1 401", 0), 0u);
  EXPECT_EQ(get("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic !!!\r\n\r\n").rfind("HTTP/1.1 401", 0), 0u);
  EXPECT_EQ(get("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n").rfind("HTTP/1.1 401", 0), 0u);
  // The password may hold a colon; the scheme is case-insensitive.
  EXPECT_EQ(get("GET /metrics HTTP/1.1\r\nHost: x\r\n" + basic("op:s3cret:x") + "\r\n").rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(get("GET / HTTP/1.1\r\nHost: x\r\nauthorization: basic " + tls::base64Encode("op:s3cret:x") + "\r\n\r\n")
                .rfind("HTTP/1.1 200", 0),
            0u);
  // Probes need no credentials.
  EXPECT_EQ(get("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(get("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);
}

TEST_F(HttpAnswers, FailedLoginsAreLimited) {
  cfg_.basic_auth = true;
  const std::string wrong = "GET /metrics HTTP/1.1\r\nHost: x\r\n" + basic("op:wrong") + "\r\n";
  for (uint32_t i = 0; i < HttpServer::kAuthFailuresPerSecond; ++i)
    EXPECT_EQ(get(wrong).rfind("HTTP/1.1 401", 0), 0u);
  const std::string r = get(wrong);
  EXPECT_EQ(r.rfind("HTTP/1.1 429", 0), 0u);
  EXPECT_NE(r.find("Retry-After: 1\r\n"), std::string::npos);
  // Even the right password waits for the next second.
  EXPECT_EQ(get("GET /metrics HTTP/1.1\r\nHost: x\r\n" + basic("op:s3cret:x") + "\r\n").rfind("HTTP/1.1 429", 0), 0u);
}

}  // namespace
}  // namespace petrel
