// HTTP/1.1 request heads: what a browser's WebSocket handshake and a
// Prometheus scrape send, and what must be refused.
#include <gtest/gtest.h>

#include "src/http/request.h"

namespace petrel::http {
namespace {

TEST(HttpRequest, ParsesABrowserUpgrade) {
  const std::string head =
      "GET /mqtt?client=1 HTTP/1.1\r\n"
      "Host: 127.0.0.1:8080\r\n"
      "Connection: keep-alive, Upgrade\r\n"
      "Upgrade: websocket\r\n"
      "Sec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==  \r\n"
      "Sec-WebSocket-Protocol: mqtt, mqttv3.1\r\n"
      "\r\n"
      "\x82\x02";  // the first frame may follow in the same read
  Request r;
  size_t used = 0;
  std::string error;
  ASSERT_EQ(parseRequest(head, 8192, r, used, error), Parse::Done) << error;
  EXPECT_EQ(used, head.size() - 2);
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/mqtt?client=1");
  EXPECT_EQ(r.path(), "/mqtt");
  EXPECT_EQ(r.minor_version, 1);
  ASSERT_NE(r.header("sec-websocket-key"), nullptr);
  EXPECT_EQ(*r.header("SEC-WEBSOCKET-KEY"), "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_TRUE(r.headerHasToken("connection", "upgrade"));
  EXPECT_TRUE(r.headerHasToken("Sec-WebSocket-Protocol", "mqttv3.1"));
  EXPECT_FALSE(r.headerHasToken("Sec-WebSocket-Protocol", "mqttv5"));
  EXPECT_EQ(r.header("Origin"), nullptr);
}

TEST(HttpRequest, WaitsForTheWholeHead) {
  const std::string head = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  for (size_t n = 0; n < head.size(); ++n) {
    Request r;
    size_t used = 0;
    std::string error;
    EXPECT_EQ(parseRequest(std::string_view(head).substr(0, n), 8192, r, used, error), Parse::Incomplete) << n;
  }
}

TEST(HttpRequest, RefusesWhatIsNotAnHttp11Head) {
  const std::string bad[] = {
      "GET /x HTTP/2.0\r\n\r\n",
      "GET x HTTP/1.1\r\n\r\n",
      "GET  /x HTTP/1.1\r\n\r\n",
      "GET /x HTTP/1.1 extra\r\n\r\n",
      "G(T /x HTTP/1.1\r\n\r\n",
      "GET /x HTTP/1.1\r\nNo colon here\r\n\r\n",
      "GET /x HTTP/1.1\r\n: empty name\r\n\r\n",
      "GET /x HTTP/1.1\r\nBad Name: v\r\n\r\n",
      "GET /x HTTP/1.1\r\nName: a\x01b\r\n\r\n",
      "GET /a\x7f HTTP/1.1\r\n\r\n",
      std::string("\x10\x0c\x00\x04MQTT", 8),  // an MQTT CONNECT on an HTTP port: at once
      std::string("\x16\x03\x01\x02\x00", 5),  // a TLS ClientHello on a plain port
  };
  for (const std::string& b : bad) {
    Request r;
    size_t used = 0;
    std::string error;
    EXPECT_EQ(parseRequest(b, 8192, r, used, error), Parse::Error) << b;
    EXPECT_FALSE(error.empty());
  }
}

TEST(HttpRequest, HeadSizeLimit) {
  std::string head = "GET / HTTP/1.1\r\nX: " + std::string(200, 'a');
  Request r;
  size_t used = 0;
  std::string error;
  EXPECT_EQ(parseRequest(head, 100, r, used, error), Parse::Error);
  EXPECT_NE(error.find("larger than 100"), std::string::npos);
  head += "\r\n\r\n";
  EXPECT_EQ(parseRequest(head, 100, r, used, error), Parse::Error);
  EXPECT_EQ(parseRequest(head, 1000, r, used, error), Parse::Done);
}

TEST(HttpRequest, Response) {
  EXPECT_EQ(response(200, "OK", {"Content-Type: text/plain"}, "hi"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi");
  EXPECT_EQ(response(101, "Switching Protocols", {"Upgrade: websocket"}, {}, false),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
}

}  // namespace
}  // namespace petrel::http
