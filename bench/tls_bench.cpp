// bench/tls_bench — TLS load for an MQTT broker, to compare Petrel with
// mosquitto on the same certificates (bench/tls_bench.sh runs both).
//
//   tls_bench handshake --port P --cafile CA [--parallel N] [--seconds S]
//       N threads, each in a loop: TCP connect, TLS handshake, MQTT CONNECT,
//       CONNACK, DISCONNECT, close. Prints handshakes per second.
//   tls_bench qos1 --port P --cafile CA [--messages M] [--window W] [--payload B]
//       One subscriber and one publisher over TLS, QoS 1, topic bench/tls;
//       the publisher keeps W messages unacknowledged. Prints messages per
//       second received by the subscriber.
//
// A load tool, not part of the broker: it uses OpenSSL directly and blocking
// sockets, one thread per connection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string mode;
  int port = 8883;
  std::string cafile;
  int parallel = 2;
  double seconds = 5;
  long messages = 200000;
  int window = 100;
  int payload = 64;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "tls_bench: %s\n", what);
  ERR_print_errors_fp(stderr);
  std::exit(1);
}

int tcpConnect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect failed");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // Close with a reset: thousands of sockets in TIME_WAIT would otherwise
  // make the kernel's search for a free local port (and so connect())
  // slower and slower during a handshake run.
  linger lg{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  return fd;
}

void putU16(std::string& s, unsigned v) {
  s.push_back(static_cast<char>(v >> 8));
  s.push_back(static_cast<char>(v & 0xFF));
}
void putStr(std::string& s, const std::string& v) {
  putU16(s, static_cast<unsigned>(v.size()));
  s += v;
}
void putLen(std::string& s, size_t n) {
  do {
    uint8_t b = n & 0x7F;
    n >>= 7;
    if (n) b |= 0x80;
    s.push_back(static_cast<char>(b));
  } while (n);
}
std::string packet(uint8_t first, const std::string& body) {
  std::string p(1, static_cast<char>(first));
  putLen(p, body.size());
  return p + body;
}

std::string connectPacket(const std::string& id) {
  std::string b;
  putStr(b, "MQTT");
  b.push_back(4);     // MQTT 3.1.1
  b.push_back(0x02);  // clean session
  putU16(b, 60);
  putStr(b, id);
  return packet(0x10, b);
}

class Conn {
 public:
  Conn(SSL_CTX* ctx, int port) {
    fd_ = tcpConnect(port);
    ssl_ = SSL_new(ctx);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, "localhost");
    SSL_set1_host(ssl_, "localhost");
    if (SSL_connect(ssl_) != 1) die("TLS handshake failed");
  }
  ~Conn() {
    SSL_free(ssl_);
    close(fd_);
  }
  void write(const std::string& s) {
    if (SSL_write(ssl_, s.data(), static_cast<int>(s.size())) <= 0) die("SSL_write failed");
  }
  // Reads whole packets; calls f(first byte, body) for each.
  template <typename F>
  void readPackets(F&& f) {
    char tmp[65536];
    int n = SSL_read(ssl_, tmp, sizeof tmp);
    if (n <= 0) die("SSL_read failed (connection closed?)");
    buf_.append(tmp, static_cast<size_t>(n));
    size_t pos = 0;
    for (;;) {
      if (buf_.size() - pos < 2) break;
      size_t len = 0, mult = 1, i = pos + 1;
      bool done = false;
      while (i < buf_.size() && i < pos + 5) {
        uint8_t b = static_cast<uint8_t>(buf_[i++]);
        len += (b & 0x7F) * mult;
        mult *= 128;
        if (!(b & 0x80)) {
          done = true;
          break;
        }
      }
      if (!done || buf_.size() - i < len) break;
      f(static_cast<uint8_t>(buf_[pos]), std::string_view(buf_).substr(i, len));
      pos = i + len;
    }
    buf_.erase(0, pos);
  }
  void expect(uint8_t type) {
    bool got = false;
    while (!got) readPackets([&](uint8_t first, std::string_view) { got = got || (first >> 4) == type; });
  }

 private:
  int fd_;
  SSL* ssl_;
  std::string buf_;
};

SSL_CTX* clientContext(const Options& o) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (SSL_CTX_load_verify_locations(ctx, o.cafile.c_str(), nullptr) != 1) die("cannot load --cafile");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  // Every handshake is a full one: no session resumption.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  return ctx;
}

int handshakes(const Options& o) {
  SSL_CTX* ctx = clientContext(o);
  std::atomic<long> count{0};
  const auto end = Clock::now() + std::chrono::duration<double>(o.seconds);
  std::vector<std::thread> threads;
  for (int t = 0; t < o.parallel; ++t) {
    threads.emplace_back([&, t] {
      long i = 0;
      while (Clock::now() < end) {
        Conn c(ctx, o.port);
        c.write(connectPacket("hs-" + std::to_string(t) + "-" + std::to_string(i++)));
        c.expect(2);  // CONNACK
        c.write(std::string("\xe0\x00", 2));
        ++count;
      }
    });
  }
  const auto start = Clock::now();
  for (auto& th : threads) th.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("handshakes: %ld in %.2f s = %.0f handshakes/s (%d parallel)\n", count.load(), secs,
              count.load() / secs, o.parallel);
  SSL_CTX_free(ctx);
  return 0;
}

int qos1(const Options& o) {
  SSL_CTX* ctx = clientContext(o);
  Conn sub(ctx, o.port);
  sub.write(connectPacket("tls-bench-sub"));
  sub.expect(2);
  std::string s;
  putU16(s, 1);
  putStr(s, "bench/tls");
  s.push_back(1);
  sub.write(packet(0x82, s));
  sub.expect(9);  // SUBACK
  Conn pub(ctx, o.port);
  pub.write(connectPacket("tls-bench-pub"));
  pub.expect(2);

  const std::string payload(static_cast<size_t>(o.payload), 'x');
  auto start = Clock::now();
  std::thread receiver([&] {
    long received = 0;
    while (received < o.messages) {
      std::string acks;
      sub.readPackets([&](uint8_t first, std::string_view body) {
        if ((first >> 4) != 3) return;
        const size_t tlen = (static_cast<uint8_t>(body[0]) << 8) | static_cast<uint8_t>(body[1]);
        std::string ack;
        ack += body.substr(2 + tlen, 2);  // the packet id
        acks += packet(0x40, ack);
        ++received;
      });
      if (!acks.empty()) sub.write(acks);
    }
  });
  long sent = 0, acked = 0;
  unsigned pid = 0;
  while (acked < o.messages) {
    std::string batch;
    while (sent < o.messages && sent - acked < o.window) {
      std::string b;
      putStr(b, "bench/tls");
      pid = pid % 65535 + 1;
      putU16(b, pid);
      b += payload;
      batch += packet(0x32, b);
      ++sent;
    }
    if (!batch.empty()) pub.write(batch);
    pub.readPackets([&](uint8_t first, std::string_view) {
      if ((first >> 4) == 4) ++acked;
    });
  }
  receiver.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("qos1 1->1: %ld messages of %d bytes in %.2f s = %.0f msg/s (window %d)\n", o.messages,
              o.payload, secs, o.messages / secs, o.window);
  SSL_CTX_free(ctx);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: tls_bench handshake|qos1 --port P --cafile CA [--parallel N] [--seconds S]\n"
                 "                 [--messages M] [--window W] [--payload BYTES]\n");
    return 2;
  }
  o.mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--port") o.port = std::atoi(v);
    else if (k == "--cafile") o.cafile = v;
    else if (k == "--parallel") o.parallel = std::atoi(v);
    else if (k == "--seconds") o.seconds = std::atof(v);
    else if (k == "--messages") o.messages = std::atol(v);
    else if (k == "--window") o.window = std::atoi(v);
    else if (k == "--payload") o.payload = std::atoi(v);
    else {
      std::fprintf(stderr, "tls_bench: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (o.cafile.empty()) die("--cafile is required");
  if (o.mode == "handshake") return handshakes(o);
  if (o.mode == "qos1") return qos1(o);
  std::fprintf(stderr, "tls_bench: unknown mode %s\n", o.mode.c_str());
  return 2;
}
