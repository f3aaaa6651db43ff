// petrel_loadgen: a small MQTT 3.1.1 / 5.0 load generator for Petrel's
// benchmarks. Self-contained: C++ standard library and Linux system calls.
//
// What it measures
//   P publishers (publisher i sends to <prefix>/i) and S subscribers run in one
//   single-threaded epoll loop on loopback. It reports the publish rate
//   (QoS 0: messages written; QoS 1/2: PUBACK / PUBCOMP received, per second),
//   the delivery rate (PUBLISH packets received by all subscribers per second),
//   end-to-end latency percentiles and a correctness verdict.
//   Two things the usual load tools cannot do are first-class here:
//   * --durable: subscribers hold persistent sessions (3.1.1 clean_session=0,
//     5.0 Clean Start 0 + Session Expiry Interval 3600) while they are online,
//     so a QoS 1/2 message owed to them goes through the broker's store. Run
//     once with persistence on and once with it off to see its cost. Their
//     client ids are fixed for the run (--client-prefix); the sessions are
//     wiped before and after the run (a clean-session connect), so the
//     broker's store does not grow across runs.
//   * --shared G: subscriber j joins $share/g<j mod G>/<prefix>/#. Each group
//     must get every message exactly once (QoS 1: at least once; duplicates
//     are counted per group). --kill-member-after N: one member of group 0
//     reads but never acknowledges, and closes its socket abruptly (RST)
//     after N messages (or after 1 s without new messages); every message
//     must still reach group 0 through the other members. Its deliveries do
//     not count for the group; "redelivered" = messages it received that
//     later reached another member of group 0. (With --durable its session
//     outlives the connection, and MQTT lets a broker keep that member's
//     messages for it instead of redelivering them.)
//
// How
//   * Every payload starts with a 24-byte header: magic, publisher id,
//     sequence number, send time (CLOCK_MONOTONIC ns). The tool is both ends,
//     so latency = receive time (right after recv()) - send time.
//   * Per receiver (a subscriber, or a share group) and per publisher a bitmap
//     of sequence numbers gives unique deliveries, duplicates, and
//     out-of-order arrivals (a new sequence number lower than the highest one
//     already seen from that publisher). lost = expected - unique after the
//     drain, where expected = messages published on topics the receiver
//     matches.
//   * Flow control: at most --inflight unacknowledged QoS 1/2 PUBLISHes per
//     publisher (also capped by an MQTT 5 broker's Receive Maximum), and an
//     end-to-end window: a publisher pauses while
//     published * matching receivers - delivered >= max(--window, 2*matching).
//     Both resume when half drained (hysteresis, so writes go out in batches).
//     If a window is full and nothing is delivered for 500 ms its outstanding
//     deliveries are written off (window_stalls), so a lossy broker cannot
//     hang the run.
//   * Rates and latency are taken over [warmup, duration] (with --count: the
//     whole publish phase up to the last acknowledgement / delivery). Then a
//     drain phase waits for outstanding acknowledgements and deliveries.
//   * Packets for a connection are queued during a loop iteration and written
//     with one send(). Sockets are non-blocking with TCP_NODELAY.
//   * Safety: connects only to 127.0.0.0/8; every phase has a deadline, the
//     whole run --max-time (default 120 s), and alarm() as a last resort.
//   * --broker-pid: broker CPU % (utime+stime from /proc/PID/stat) over the
//     measured window, VmRSS before the run and after the drain.
//   * --ws: MQTT over WebSocket (RFC 6455) on a WebSocket listener: every
//     connection upgrades first (GET --ws-path, subprotocol mqtt); what one
//     flush writes goes out as masked binary frames of at most --ws-frame
//     bytes (a fresh mask each), and the broker's frames are unframed as
//     they arrive (pings answered). Same scenarios, same checks, so a run
//     on the TCP port and one on the WebSocket port compare the transports.
//
// Output: '# ' human lines and exactly one JSON line. Exit status 0 when the
// run is correct (no loss for QoS > 0, no duplicates for QoS 2, no
// reordering per publisher per subscriber for non-shared subscriptions, no
// protocol or connection errors), 3 otherwise, 2 for bad arguments.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

// ---------------------------------------------------------------- utilities

uint64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

uint64_t cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

constexpr uint64_t kSec = 1000000000ull;
constexpr uint64_t kMs = 1000000ull;
constexpr uint32_t kMagic = 0x504c4731;  // "PLG1"
constexpr size_t kHeader = 24;

void put_le32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_le64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t get_le32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t get_le64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

std::string json_escape(const std::string& s) {
  std::string o;
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') { o += '\\'; o += char(ch); }
    else if (ch < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", ch); o += b; }
    else o += char(ch);
  }
  return o;
}

// ---------------------------------------------------------------- options

struct Options {
  std::string host = "127.0.0.1";
  int port = 1883;
  int sub_port = 0;  // subscribers' port (another node of a cluster); 0 = port
  double settle = 0;  // seconds between the subscriptions and the first publish
  int proto = 4;
  int pubs = 1;
  int subs = 1;
  int qos = 0;
  size_t payload = 64;
  double duration = 10;
  double warmup = 1;
  uint64_t count = 0;  // per publisher; 0 = duration mode
  unsigned inflight = 100;
  uint64_t window = 1000;
  bool durable = false;
  uint32_t session_expiry = 3600;
  int shared = 0;
  long long kill_after = -1;
  std::string prefix = "bench";
  std::string sub_filter = "exact";
  std::string label;
  long broker_pid = -1;
  double max_time = 120;
  double drain = 5;
  double drain_idle = 1;
  double connect_timeout = 10;
  int keepalive = 60;
  std::string client_prefix = "petrel-lg";
  bool ws = false;
  std::string ws_path = "/mqtt";
  size_t ws_frame = 65536;
};

const char* kUsage =
    "usage: petrel_loadgen [options]\n"
    "MQTT load generator: P publishers -> S subscribers on loopback; reports\n"
    "publish/delivery rates, latency percentiles, loss/dups/reordering.\n"
    "  --host H            broker address, 127.0.0.0/8 only (127.0.0.1)\n"
    "  --port N            broker port (1883)\n"
    "  --sub-port N        subscribers connect here instead (another node of\n"
    "                      a cluster: messages cross between nodes)\n"
    "  --settle SEC        wait after subscribing before publishing (0): a\n"
    "                      cluster's nodes learn of the subscriptions\n"
    "  --proto 4|5         MQTT 3.1.1 or 5.0 (4)\n"
    "  --pubs P            publishers; publisher i sends to <prefix>/i (1)\n"
    "  --subs S            subscribers (1)\n"
    "  --qos 0|1|2         publish and subscribe QoS (0)\n"
    "  --payload B         payload bytes, >= 24 (64)\n"
    "  --duration SEC      publishing time, warmup included (10)\n"
    "  --count N           instead of --duration: N messages per publisher\n"
    "  --warmup SEC        excluded from rates and latency (1)\n"
    "  --inflight N        max unacknowledged QoS 1/2 publishes per publisher;\n"
    "                      also sent as Receive Maximum with --proto 5 (100)\n"
    "  --window N          end-to-end window in deliveries per publisher;\n"
    "                      0 = off (1000)\n"
    "  --sub-filter exact|all  non-shared subscriber j subscribes to\n"
    "                      <prefix>/(j mod P) (exact, default) or <prefix>/# (all)\n"
    "  --durable           persistent subscriber sessions (clean_session=0 /\n"
    "                      Session Expiry 3600), wiped before and after the run\n"
    "  --session-expiry S  MQTT 5 Session Expiry for --durable (3600)\n"
    "  --shared G          subscriber j joins $share/g<j mod G>/<prefix>/#\n"
    "  --kill-member-after N  (--shared) one member of group 0 never acks and\n"
    "                      closes abruptly after N messages\n"
    "  --topic-prefix T    topic prefix (bench)\n"
    "  --client-prefix C   client id prefix (petrel-lg); ids are C-s<j>, C-p<i>\n"
    "  --label L           label copied to the JSON line\n"
    "  --broker-pid PID    report broker CPU % and VmRSS from /proc\n"
    "  --drain SEC         max wait for outstanding deliveries/acks (5)\n"
    "  --drain-idle SEC    stop draining after this long without progress (1)\n"
    "  --connect-timeout SEC  per connect phase (10)\n"
    "  --keepalive SEC     MQTT keep alive (60)\n"
    "  --max-time SEC      hard limit for the whole run (120)\n"
    "  --ws                MQTT over WebSocket (the port is a WebSocket listener)\n"
    "  --ws-path P         the upgrade's request target (/mqtt)\n"
    "  --ws-frame N        largest frame payload sent (65536)\n"
    "  --help\n"
    "Output: '# ' lines and one JSON line. Exit 0 = correct, 3 = incorrect,\n"
    "2 = bad arguments.\n";

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "petrel_loadgen: %s\n(see --help)\n", msg.c_str());
  std::exit(2);
}

double parse_num(const std::string& opt, const char* v, double lo, double hi) {
  char* end = nullptr;
  errno = 0;
  double d = std::strtod(v, &end);
  if (errno || end == v || *end || !(d >= lo && d <= hi))
    usage_error("bad value for " + opt + ": '" + v + "'");
  return d;
}

uint64_t parse_int(const std::string& opt, const char* v, uint64_t lo, uint64_t hi) {
  char* end = nullptr;
  errno = 0;
  unsigned long long x = std::strtoull(v, &end, 10);
  if (errno || end == v || *end || v[0] == '-' || x < lo || x > hi)
    usage_error("bad value for " + opt + ": '" + v + "'");
  return x;
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") { std::fputs(kUsage, stdout); std::exit(0); }
    if (a == "--durable") { o.durable = true; continue; }
    if (a == "--ws") { o.ws = true; continue; }
    if (i + 1 >= argc) usage_error("missing value for " + a);
    const char* v = argv[++i];
    if (a == "--host") o.host = v;
    else if (a == "--port") o.port = int(parse_int(a, v, 1, 65535));
    else if (a == "--sub-port") o.sub_port = int(parse_int(a, v, 1, 65535));
    else if (a == "--settle") o.settle = parse_num(a, v, 0, 60);
    else if (a == "--proto") o.proto = int(parse_int(a, v, 4, 5));
    else if (a == "--pubs") o.pubs = int(parse_int(a, v, 1, 100000));
    else if (a == "--subs") o.subs = int(parse_int(a, v, 0, 100000));
    else if (a == "--qos") o.qos = int(parse_int(a, v, 0, 2));
    else if (a == "--payload") o.payload = parse_int(a, v, kHeader, 16u << 20);
    else if (a == "--duration") o.duration = parse_num(a, v, 0.01, 86400);
    else if (a == "--count") o.count = parse_int(a, v, 1, 1ull << 32);
    else if (a == "--warmup") o.warmup = parse_num(a, v, 0, 86400);
    else if (a == "--inflight") o.inflight = unsigned(parse_int(a, v, 1, 65535));
    else if (a == "--window") o.window = parse_int(a, v, 0, 1ull << 40);
    else if (a == "--session-expiry") o.session_expiry = uint32_t(parse_int(a, v, 1, 0xffffffffu));
    else if (a == "--shared") o.shared = int(parse_int(a, v, 1, 100000));
    else if (a == "--kill-member-after") o.kill_after = (long long)parse_int(a, v, 1, 1ull << 40);
    else if (a == "--topic-prefix") o.prefix = v;
    else if (a == "--sub-filter") o.sub_filter = v;
    else if (a == "--client-prefix") o.client_prefix = v;
    else if (a == "--label") o.label = v;
    else if (a == "--broker-pid") o.broker_pid = long(parse_int(a, v, 1, 1ull << 31));
    else if (a == "--drain") o.drain = parse_num(a, v, 0, 3600);
    else if (a == "--drain-idle") o.drain_idle = parse_num(a, v, 0.01, 3600);
    else if (a == "--connect-timeout") o.connect_timeout = parse_num(a, v, 0.1, 3600);
    else if (a == "--keepalive") o.keepalive = int(parse_int(a, v, 0, 65535));
    else if (a == "--max-time") o.max_time = parse_num(a, v, 1, 86400);
    else if (a == "--ws-path") o.ws_path = v;
    else if (a == "--ws-frame") o.ws_frame = parse_int(a, v, 1, 1u << 30);
    else usage_error("unknown option " + a);
  }
  if (o.count == 0 && o.warmup >= o.duration) usage_error("--warmup must be shorter than --duration");
  if (o.sub_filter != "exact" && o.sub_filter != "all") usage_error("--sub-filter is exact or all");
  if (o.shared && o.subs < o.shared) usage_error("--shared G needs at least G subscribers");
  if (o.kill_after >= 0 && !o.shared) usage_error("--kill-member-after needs --shared");
  if (o.kill_after >= 0 && o.qos == 0) usage_error("--kill-member-after needs --qos 1 or 2");
  if (o.prefix.empty() || o.prefix.find_first_of("+#") != std::string::npos)
    usage_error("bad --topic-prefix");
  if (o.client_prefix.empty() || o.client_prefix.size() > 16)
    usage_error("--client-prefix must be 1..16 characters");
  if (o.ws_path.empty() || o.ws_path[0] != '/' || o.ws_path.find_first_of(" \r\n") != std::string::npos)
    usage_error("bad --ws-path");
  return o;
}

// ---------------------------------------------------------------- histogram
// Log-linear: values below 128 exact; above, 128 sub-buckets per power of
// two (relative error of a bucket midpoint < 0.4 %).

class Histogram {
 public:
  Histogram() : b_(64 * 128, 0) {}
  void add(uint64_t v) {
    ++b_[index(v)];
    ++n_;
    max_ = std::max(max_, v);
  }
  uint64_t count() const { return n_; }
  uint64_t max() const { return max_; }
  double quantile(double q) const {
    if (n_ == 0) return 0;
    uint64_t target = uint64_t(std::ceil(q * double(n_)));
    if (target < 1) target = 1;
    uint64_t cum = 0;
    for (size_t i = 0; i < b_.size(); ++i) {
      cum += b_[i];
      if (cum >= target) return std::min(mid(i), double(max_));
    }
    return double(max_);
  }

 private:
  static size_t index(uint64_t v) {
    if (v < 128) return size_t(v);
    int e = 63 - __builtin_clzll(v);  // >= 7
    return size_t(e - 6) * 128 + size_t((v >> (e - 7)) & 127);
  }
  static double mid(size_t i) {
    if (i < 256) return double(i);
    size_t e = i / 128 + 6;
    uint64_t sub = i % 128;
    uint64_t lo = (128 + sub) << (e - 7);
    uint64_t width = 1ull << (e - 7);
    return double(lo) + double(width - 1) / 2.0;
  }
  std::vector<uint64_t> b_;
  uint64_t n_ = 0, max_ = 0;
};

// ---------------------------------------------------------------- bitmap

struct SeqSet {
  std::vector<uint64_t> w;
  bool test(uint64_t s) const {
    size_t i = size_t(s >> 6);
    return i < w.size() && (w[i] >> (s & 63) & 1);
  }
  void set(uint64_t s) {
    size_t i = size_t(s >> 6);
    if (i >= w.size()) w.resize(std::max(i + 1, w.size() * 2), 0);
    w[i] |= 1ull << (s & 63);
  }
};

struct Track {  // one receiver x one publisher
  SeqSet seen;
  uint64_t unique = 0, dups = 0, ooo = 0;
  int64_t maxseq = -1;
};

// ---------------------------------------------------------------- codec

void put_u16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(uint8_t(v >> 8));
  b.push_back(uint8_t(v));
}
void put_u32(std::vector<uint8_t>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
}
void put_varint(std::vector<uint8_t>& b, uint32_t v) {
  do {
    uint8_t d = v & 0x7f;
    v >>= 7;
    if (v) d |= 0x80;
    b.push_back(d);
  } while (v);
}
void put_str(std::vector<uint8_t>& b, std::string_view s) {
  put_u16(b, uint16_t(s.size()));
  b.insert(b.end(), s.begin(), s.end());
}

// Bounds-checked reader over one packet body.
struct Rd {
  const uint8_t* p;
  size_t n;
  size_t i = 0;
  bool ok = true;
  size_t left() const { return ok ? n - i : 0; }
  uint8_t u8() {
    if (i + 1 > n) { ok = false; return 0; }
    return p[i++];
  }
  uint16_t u16() {
    if (i + 2 > n) { ok = false; return 0; }
    uint16_t v = uint16_t(p[i] << 8 | p[i + 1]);
    i += 2;
    return v;
  }
  uint32_t u32() {
    if (i + 4 > n) { ok = false; return 0; }
    uint32_t v = uint32_t(p[i]) << 24 | uint32_t(p[i + 1]) << 16 | uint32_t(p[i + 2]) << 8 | p[i + 3];
    i += 4;
    return v;
  }
  uint32_t varint() {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      uint8_t d = u8();
      if (!ok) return 0;
      v |= uint32_t(d & 0x7f) << (7 * k);
      if (!(d & 0x80)) return v;
    }
    ok = false;
    return 0;
  }
  void skip(size_t k) {
    if (i + k > n) { ok = false; return; }
    i += k;
  }
  std::string_view bytes(size_t k) {
    if (i + k > n) { ok = false; return {}; }
    std::string_view s(reinterpret_cast<const char*>(p + i), k);
    i += k;
    return s;
  }
};

struct Props {
  uint32_t receive_max = 0;  // 0 = absent
  std::string reason;
};

// Walks an MQTT 5 property block, keeping the few we care about and skipping
// the rest by type. Returns false on a malformed or unknown property.
bool read_props(Rd& r, Props* out) {
  uint32_t len = r.varint();
  if (!r.ok || len > r.left()) return false;
  Rd p{r.p + r.i, len};
  r.i += len;
  while (p.ok && p.i < p.n) {
    uint32_t id = p.varint();
    switch (id) {
      case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2A:
        p.u8();
        break;
      case 0x13: case 0x22: case 0x23:
        p.u16();
        break;
      case 0x21: {
        uint16_t v = p.u16();
        if (out) out->receive_max = v;
        break;
      }
      case 0x02: case 0x11: case 0x18: case 0x27:
        p.u32();
        break;
      case 0x0B:
        p.varint();
        break;
      case 0x1F: {
        std::string_view s = p.bytes(p.u16());
        if (out && p.ok) out->reason.assign(s);
        break;
      }
      case 0x03: case 0x08: case 0x09: case 0x12: case 0x15: case 0x16: case 0x1A: case 0x1C:
        p.bytes(p.u16());
        break;
      case 0x26:
        p.bytes(p.u16());
        p.bytes(p.u16());
        break;
      default:
        return false;
    }
  }
  return p.ok;
}

// ---------------------------------------------------------------- engine

enum class Role : uint8_t { Sub, Pub };
enum class St : uint8_t { Idle, Connecting, WaitConnack, WaitSuback, Ready, Closing, Closed, Failed, Killed };

struct Conn {
  Role role = Role::Sub;
  int idx = 0;
  std::string cid;
  bool wipe = false;  // a clean-session connect that only removes a durable session
  St st = St::Idle;
  int fd = -1;
  bool ev_out = false, dirty = false, wr_shut = false;
  std::vector<uint8_t> in;
  size_t in_off = 0;
  std::vector<uint8_t> out;
  size_t out_off = 0;
  uint64_t last_send = 0;
  bool session_present = false;
  uint16_t sub_pid = 0;
  // the member that stops acking (--kill-member-after)
  bool killer = false;
  uint64_t killer_count = 0, killer_last = 0;
  // --ws: the upgrade, then frames. `wire` holds bytes ready for the socket
  // (the upgrade request, framed output); `out` is framed into it at each
  // flush once the upgrade is answered.
  bool ws_open = false;
  std::vector<uint8_t> wire;
  size_t wire_off = 0;
  std::string http;            // the upgrade's answer while it arrives
  uint8_t ws_hdr[10] = {};     // a server frame header split across reads
  size_t ws_hdr_len = 0;
  bool ws_in_frame = false;
  uint8_t ws_op = 0;
  uint64_t ws_left = 0;        // payload bytes of the frame being read
  std::vector<uint8_t> ws_ctl;  // a control frame's payload
};

size_t unsent(const Conn& c) { return c.out.size() - c.out_off + c.wire.size() - c.wire_off; }

struct Pub {
  std::string topic;
  uint64_t published = 0, acked = 0, rejected = 0;
  unsigned inflight = 0, cap = 100;
  bool infl_blocked = false, win_blocked = false;
  uint64_t win_blocked_since = 0;
  int64_t written_off = 0;
  uint16_t next_pid = 0;
  std::vector<uint8_t> pid_state;  // 0 free, 1 awaiting PUBACK/PUBREC, 2 awaiting PUBCOMP
  uint64_t matching = 0;           // receivers whose filter matches this topic
  uint64_t unique_recv = 0;        // unique deliveries over all receivers
  std::vector<uint8_t> payload;
};

void on_alarm(int) {
  const char msg[] = "# !!! petrel_loadgen: safety alarm fired, aborting\n";
  ssize_t r = write(1, msg, sizeof msg - 1);
  (void)r;
  _exit(3);
}

class LoadGen {
 public:
  explicit LoadGen(const Options& o) : o_(o) {}
  int run();

 private:
  // setup
  bool resolve();
  void build();
  // connections
  bool open_conn(int id, bool wipe);
  void queue_connect(Conn& c, bool clean, uint32_t expiry);
  void fail(Conn& c, const std::string& why);
  void close_fd(Conn& c);
  void begin_close(Conn& c);
  void kill_member(Conn& c, const char* why);
  void mark_dirty(Conn& c, uint32_t id);
  void flush(Conn& c, uint32_t id);
  void set_out_interest(Conn& c, uint32_t id, bool want);
  // --ws
  void ws_frame_out(Conn& c, uint8_t opcode, const uint8_t* p, size_t n);
  bool ws_input(Conn& c, uint32_t id, const uint8_t* p, size_t n);
  bool ws_frames(Conn& c, uint32_t id, const uint8_t* p, size_t n);
  // loop
  void loop_once(int timeout_ms);
  void on_readable(Conn& c, uint32_t id);
  void handle_packet(Conn& c, uint32_t id, uint8_t h, const uint8_t* body, size_t len, uint64_t rnow);
  void on_publish(Conn& c, uint32_t id, uint8_t h, Rd& r, uint64_t rnow);
  void on_ack(Conn& c, uint32_t id, uint8_t type, Rd& r, uint64_t now);
  void produce(uint64_t now);
  bool can_send(Pub& p, uint64_t now);
  void emit_publish(Pub& p, int i, uint64_t now);
  void tick(uint64_t now);
  // phases
  bool connect_phase(const std::vector<int>& ids, bool wipe, const char* what);
  bool close_phase(const std::vector<int>& ids, const char* what);
  // accounting
  int receiver_of(int sub) const { return o_.shared ? sub % o_.shared : sub; }
  bool matches(int r, int pub) const {
    if (o_.shared || o_.sub_filter == "all") return true;
    return r % o_.pubs == pub;
  }
  Track& track(int r, int pub) { return tracks_[size_t(r) * size_t(o_.pubs) + size_t(pub)]; }
  void error(const std::string& s) {
    ++errors_;
    if (errlog_.size() < 20) errlog_.push_back(s);
  }
  bool in_window(uint64_t t) const { return t >= win_begin_ && t < win_end_; }
  uint64_t expected_total() const;
  uint64_t unique_total() const;
  bool drained() const;
  // broker /proc
  long long broker_ticks() const;
  long long broker_rss_kb() const;

  const Options& o_;
  sockaddr_in addr_{};
  sockaddr_in sub_addr_{};  // subscribers' (--sub-port)
  int ep_ = -1;
  std::vector<Conn> conns_;  // subscribers 0..S-1, publishers S..S+P-1
  std::vector<Pub> pubs_;
  std::vector<uint32_t> dirty_;
  std::vector<uint8_t> ws_buf_ = std::vector<uint8_t>(65536);  // --ws: reads land here, then are unframed
  uint64_t ws_rng_ = 0x9E3779B97F4A7C15ull;                     // --ws: masking keys
  std::vector<Track> tracks_;
  std::vector<SeqSet> killer_seen_;   // group 0: messages the killed member got
  std::vector<int64_t> member_max_;   // shared: per member per publisher
  int receivers_ = 0;
  int killer_id_ = -1;
  bool publishing_ = false;
  bool killed_ = false;
  uint64_t t0_ = 0, deadline_all_ = 0;
  uint64_t t_start_ = 0, win_begin_ = UINT64_MAX, win_end_ = UINT64_MAX, pub_end_ = UINT64_MAX;
  uint64_t last_ka_check_ = 0;
  uint64_t last_progress_ = 0, last_delivery_ = 0, last_ack_ = 0, last_write_ = 0;
  // counters
  uint64_t deliveries_ = 0, deliveries_win_ = 0, pubs_win_ = 0, dups_ = 0, ooo_ = 0, ooo_members_ = 0;
  uint64_t foreign_ = 0, redelivered_ = 0, window_stalls_ = 0, killer_received_ = 0;
  uint64_t unexpected_qos_ = 0;
  uint64_t errors_ = 0;
  std::vector<std::string> errlog_;
  Histogram hist_;
  // broker and tool CPU over the window
  long long bt_begin_ = -1, bt_end_ = -1;
  uint64_t tool_cpu_begin_ = 0, tool_cpu_end_ = 0, wall_begin_ = 0, wall_end_ = 0;
  bool sampled_begin_ = false, sampled_end_ = false;
  long long rss_start_ = -1, rss_end_ = -1;
};

bool LoadGen::resolve() {
  std::string h = o_.host == "localhost" ? "127.0.0.1" : o_.host;
  in_addr a{};
  if (inet_pton(AF_INET, h.c_str(), &a) != 1) {
    std::fprintf(stderr, "petrel_loadgen: --host must be an IPv4 loopback address (127.0.0.0/8)\n");
    return false;
  }
  if ((ntohl(a.s_addr) >> 24) != 127) {
    std::fprintf(stderr, "petrel_loadgen: refusing to connect to %s: only 127.0.0.0/8 is allowed\n", h.c_str());
    return false;
  }
  addr_.sin_family = AF_INET;
  addr_.sin_port = htons(uint16_t(o_.port));
  addr_.sin_addr = a;
  sub_addr_ = addr_;
  if (o_.sub_port) sub_addr_.sin_port = htons(uint16_t(o_.sub_port));
  return true;
}

void LoadGen::build() {
  const int S = o_.subs, P = o_.pubs;
  conns_.resize(size_t(S + P));
  for (int j = 0; j < S; ++j) {
    Conn& c = conns_[size_t(j)];
    c.role = Role::Sub;
    c.idx = j;
    c.cid = o_.client_prefix + "-s" + std::to_string(j);
  }
  for (int i = 0; i < P; ++i) {
    Conn& c = conns_[size_t(S + i)];
    c.role = Role::Pub;
    c.idx = i;
    c.cid = o_.client_prefix + "-p" + std::to_string(i);
  }
  receivers_ = o_.shared ? o_.shared : S;
  tracks_.resize(size_t(receivers_) * size_t(P));
  if (o_.shared) member_max_.assign(size_t(S) * size_t(P), -1);
  pubs_.resize(size_t(P));
  for (int i = 0; i < P; ++i) {
    Pub& p = pubs_[size_t(i)];
    p.topic = o_.prefix + "/" + std::to_string(i);
    p.cap = o_.inflight;
    p.pid_state.assign(65536, 0);
    for (int r = 0; r < receivers_; ++r)
      if (matches(r, i)) ++p.matching;
    p.payload.resize(o_.payload);
    for (size_t k = 0; k < o_.payload; ++k) p.payload[k] = uint8_t('a' + (k + size_t(i)) % 26);
  }
  if (o_.kill_after >= 0) {
    killer_id_ = 0;  // subscriber 0 is in group 0
    conns_[0].killer = true;
    killer_seen_.resize(size_t(P));
  }
}

void LoadGen::queue_connect(Conn& c, bool clean, uint32_t expiry) {
  std::vector<uint8_t> body;
  put_str(body, "MQTT");
  body.push_back(uint8_t(o_.proto));
  body.push_back(clean ? 0x02 : 0x00);
  put_u16(body, uint16_t(o_.keepalive));
  if (o_.proto == 5) {
    std::vector<uint8_t> props;
    if (expiry) { props.push_back(0x11); put_u32(props, expiry); }
    props.push_back(0x21);
    put_u16(props, uint16_t(o_.inflight));
    put_varint(body, uint32_t(props.size()));
    body.insert(body.end(), props.begin(), props.end());
  }
  put_str(body, c.cid);
  c.out.push_back(0x10);
  put_varint(c.out, uint32_t(body.size()));
  c.out.insert(c.out.end(), body.begin(), body.end());
}

bool LoadGen::open_conn(int id, bool wipe) {
  Conn& c = conns_[size_t(id)];
  c.in.clear(); c.in_off = 0; c.out.clear(); c.out_off = 0;
  c.ev_out = false; c.dirty = false; c.wr_shut = false; c.session_present = false;
  c.wire.clear(); c.wire_off = 0; c.http.clear(); c.ws_open = false;
  c.ws_hdr_len = 0; c.ws_in_frame = false; c.ws_left = 0;
  if (o_.ws) {
    const std::string req = "GET " + o_.ws_path + " HTTP/1.1\r\nHost: " + o_.host + ":" + std::to_string(o_.port) +
                            "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                            "Sec-WebSocket-Protocol: mqtt\r\n\r\n";
    c.wire.assign(req.begin(), req.end());
  }
  c.wipe = wipe;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) { error(std::string("socket: ") + std::strerror(errno)); c.st = St::Failed; return false; }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const sockaddr_in& to = c.role == Role::Sub ? sub_addr_ : addr_;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS) {
    error(c.cid + ": connect: " + std::strerror(errno));
    ::close(fd);
    c.st = St::Failed;
    return false;
  }
  c.fd = fd;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u32 = uint32_t(id);
  if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    error(std::string("epoll_ctl: ") + std::strerror(errno));
    close_fd(c);
    c.st = St::Failed;
    return false;
  }
  c.ev_out = true;
  c.st = St::Connecting;
  bool durable_sub = c.role == Role::Sub && o_.durable && !wipe;
  queue_connect(c, !durable_sub, durable_sub && o_.proto == 5 ? o_.session_expiry : 0);
  return true;
}

void LoadGen::close_fd(Conn& c) {
  if (c.fd >= 0) {
    ::close(c.fd);  // also removes it from the epoll set
    c.fd = -1;
  }
  c.ev_out = false;
}

void LoadGen::fail(Conn& c, const std::string& why) {
  if (c.st == St::Failed || c.st == St::Killed || c.st == St::Closed) return;
  error(c.cid + ": " + why);
  close_fd(c);
  c.st = St::Failed;
}

void LoadGen::kill_member(Conn& c, const char* why) {
  if (c.fd >= 0) {
    linger l{1, 0};  // close with RST
    setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  close_fd(c);
  c.st = St::Killed;
  killed_ = true;
  std::printf("# member %s of group g0 killed (%s) after %llu unacknowledged messages\n", c.cid.c_str(),
              why, (unsigned long long)c.killer_count);
}

void LoadGen::mark_dirty(Conn& c, uint32_t id) {
  if (!c.dirty) {
    c.dirty = true;
    dirty_.push_back(id);
  }
}

void LoadGen::set_out_interest(Conn& c, uint32_t id, bool want) {
  if (c.fd < 0 || c.ev_out == want) return;
  epoll_event ev{};
  ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
  ev.data.u32 = id;
  epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  c.ev_out = want;
}

void LoadGen::ws_frame_out(Conn& c, uint8_t opcode, const uint8_t* p, size_t n) {
  size_t pos = 0;
  do {
    const size_t chunk = std::min(n - pos, o_.ws_frame);
    uint8_t h[14];
    size_t hl = 2;
    h[0] = uint8_t(0x80 | opcode);
    if (chunk < 126) {
      h[1] = uint8_t(0x80 | chunk);
    } else if (chunk <= 0xFFFF) {
      h[1] = 0x80 | 126;
      h[2] = uint8_t(chunk >> 8);
      h[3] = uint8_t(chunk);
      hl = 4;
    } else {
      h[1] = 0x80 | 127;
      for (int k = 0; k < 8; ++k) h[2 + k] = uint8_t(uint64_t(chunk) >> (56 - 8 * k));
      hl = 10;
    }
    // xorshift64: a fresh masking key per frame
    ws_rng_ ^= ws_rng_ << 13;
    ws_rng_ ^= ws_rng_ >> 7;
    ws_rng_ ^= ws_rng_ << 17;
    const uint32_t key = uint32_t(ws_rng_);
    std::memcpy(h + hl, &key, 4);
    hl += 4;
    c.wire.insert(c.wire.end(), h, h + hl);
    const size_t base = c.wire.size();
    c.wire.resize(base + chunk);
    uint8_t* dst = c.wire.data() + base;
    const uint8_t* src = p + pos;
    const uint64_t k64 = uint64_t(key) | uint64_t(key) << 32;
    size_t i = 0;
    for (; i + 8 <= chunk; i += 8) {
      uint64_t v;
      std::memcpy(&v, src + i, 8);
      v ^= k64;
      std::memcpy(dst + i, &v, 8);
    }
    for (; i < chunk; ++i) dst[i] = src[i] ^ h[hl - 4 + (i & 3)];
    pos += chunk;
  } while (pos < n);
}

bool LoadGen::ws_input(Conn& c, uint32_t id, const uint8_t* p, size_t n) {
  if (c.ws_open) return ws_frames(c, id, p, n);
  c.http.append(reinterpret_cast<const char*>(p), n);
  const size_t end = c.http.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (c.http.size() > 16384) { fail(c, "no answer to the WebSocket upgrade"); return false; }
    return true;
  }
  if (c.http.compare(0, 13, "HTTP/1.1 101 ") != 0) {
    fail(c, "WebSocket upgrade refused: " + c.http.substr(0, c.http.find("\r\n")));
    return false;
  }
  c.ws_open = true;
  mark_dirty(c, id);  // CONNECT may go now
  const std::string rest = c.http.substr(end + 4);
  c.http.clear();
  return ws_frames(c, id, reinterpret_cast<const uint8_t*>(rest.data()), rest.size());
}

bool LoadGen::ws_frames(Conn& c, uint32_t id, const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (!c.ws_in_frame) {
      // the header (at most 10 bytes: server frames are not masked)
      auto need = [&c]() -> size_t {
        if (c.ws_hdr_len < 2) return 0;
        const uint8_t l = c.ws_hdr[1] & 0x7f;
        return l == 126 ? 4 : l == 127 ? 10 : 2;
      };
      while (i < n && (need() == 0 || c.ws_hdr_len < need())) c.ws_hdr[c.ws_hdr_len++] = p[i++];
      if (need() == 0 || c.ws_hdr_len < need()) break;
      if (c.ws_hdr[1] & 0x80) { fail(c, "masked frame from the broker"); return false; }
      const uint8_t l = c.ws_hdr[1] & 0x7f;
      uint64_t len = l;
      if (l == 126) len = uint64_t(c.ws_hdr[2]) << 8 | c.ws_hdr[3];
      if (l == 127) {
        len = 0;
        for (int k = 0; k < 8; ++k) len = len << 8 | c.ws_hdr[2 + k];
      }
      c.ws_op = c.ws_hdr[0] & 0x0f;
      c.ws_hdr_len = 0;
      c.ws_in_frame = true;
      c.ws_left = len;
      c.ws_ctl.clear();
      if (c.ws_op != 0 && c.ws_op != 2 && c.ws_op != 8 && c.ws_op != 9 && c.ws_op != 10) {
        fail(c, "unexpected WebSocket opcode " + std::to_string(c.ws_op) + " from the broker");
        return false;
      }
    }
    const size_t take = size_t(std::min<uint64_t>(c.ws_left, n - i));
    if (c.ws_op < 8) c.in.insert(c.in.end(), p + i, p + i + take);
    else c.ws_ctl.insert(c.ws_ctl.end(), p + i, p + i + take);
    i += take;
    c.ws_left -= take;
    if (c.ws_left) continue;
    c.ws_in_frame = false;
    if (c.ws_op == 9) {  // ping -> pong
      ws_frame_out(c, 10, c.ws_ctl.data(), c.ws_ctl.size());
      mark_dirty(c, id);
    } else if (c.ws_op == 8 && c.st != St::Closing) {
      const unsigned code = c.ws_ctl.size() >= 2 ? unsigned(c.ws_ctl[0]) << 8 | c.ws_ctl[1] : 1005;
      fail(c, "WebSocket close " + std::to_string(code) + " from the broker");
      return false;
    }
  }
  return true;
}

void LoadGen::flush(Conn& c, uint32_t id) {
  c.dirty = false;
  if (c.fd < 0 || c.st == St::Connecting) return;
  // --ws: everything queued in this loop turn becomes frames; `wire` holds
  // what the socket has not taken yet.
  if (o_.ws && c.ws_open && c.out_off < c.out.size()) {
    ws_frame_out(c, 2, c.out.data() + c.out_off, c.out.size() - c.out_off);
    c.out.clear();
    c.out_off = 0;
  }
  std::vector<uint8_t>& buf = o_.ws ? c.wire : c.out;
  size_t& off = o_.ws ? c.wire_off : c.out_off;
  if (off < buf.size()) {
    ssize_t n = ::send(c.fd, buf.data() + off, buf.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        if (c.st == St::Closing) { close_fd(c); c.st = St::Closed; }
        else fail(c, std::string("send: ") + std::strerror(errno));
        return;
      }
    } else {
      off += size_t(n);
      c.last_send = mono_ns();
    }
    if (off == buf.size()) {
      buf.clear();
      off = 0;
    } else if (off > (1u << 20)) {
      buf.erase(buf.begin(), buf.begin() + std::ptrdiff_t(off));
      off = 0;
    }
  }
  bool pending = off < buf.size();
  set_out_interest(c, id, pending);
  if (!pending && c.st == St::Closing && !c.wr_shut) {
    ::shutdown(c.fd, SHUT_WR);
    c.wr_shut = true;
  }
}

void LoadGen::begin_close(Conn& c) {
  if (c.fd < 0) return;
  c.out.push_back(0xE0);
  c.out.push_back(0x00);
  c.st = St::Closing;
  mark_dirty(c, uint32_t(&c - conns_.data()));
}

void LoadGen::on_readable(Conn& c, uint32_t id) {
  size_t total = 0;
  uint64_t rnow = 0;
  for (;;) {
    if (c.in.size() - c.in_off < 65536 && c.in_off > 0) {
      c.in.erase(c.in.begin(), c.in.begin() + std::ptrdiff_t(c.in_off));
      c.in_off = 0;
    }
    size_t old = c.in.size();
    uint8_t* dst = ws_buf_.data();  // --ws: unframed into c.in
    if (!o_.ws) {
      c.in.resize(old + 65536);
      dst = c.in.data() + old;
    }
    ssize_t n = ::recv(c.fd, dst, 65536, MSG_DONTWAIT);
    if (n > 0) {
      total += size_t(n);
      rnow = mono_ns();
      if (!o_.ws) c.in.resize(old + size_t(n));
      else if (!ws_input(c, id, dst, size_t(n))) return;
    } else {
      if (!o_.ws) c.in.resize(old);
      if (n == 0) {
        if (c.st == St::Closing) { close_fd(c); c.st = St::Closed; }
        else fail(c, "connection closed by the broker");
        return;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      if (c.st == St::Closing) { close_fd(c); c.st = St::Closed; }
      else fail(c, std::string("recv: ") + std::strerror(errno));
      return;
    }
    // parse complete packets
    while (c.fd >= 0) {
      const uint8_t* p = c.in.data() + c.in_off;
      size_t avail = c.in.size() - c.in_off;
      if (avail < 2) break;
      uint32_t rl = 0;
      size_t k = 1;
      bool complete = false;
      for (int shift = 0; k < avail && k <= 4; shift += 7, ++k) {
        rl |= uint32_t(p[k] & 0x7f) << shift;
        if (!(p[k] & 0x80)) { complete = true; ++k; break; }
      }
      if (!complete) {
        if (k > 4) { fail(c, "malformed remaining length"); return; }
        break;
      }
      if (rl > (64u << 20)) { fail(c, "packet too large"); return; }
      if (avail < k + rl) break;
      c.in_off += k + rl;
      if (c.st != St::Closing) handle_packet(c, id, p[0], p + k, rl, rnow);
    }
    if (c.fd < 0) return;
    if (c.in_off == c.in.size()) { c.in.clear(); c.in_off = 0; }
    if (size_t(n) < 65536 || total >= (1u << 20)) break;
  }
}

void LoadGen::handle_packet(Conn& c, uint32_t id, uint8_t h, const uint8_t* body, size_t len, uint64_t rnow) {
  Rd r{body, len};
  uint8_t type = h >> 4;
  switch (type) {
    case 2: {  // CONNACK
      if (c.st != St::WaitConnack) return fail(c, "unexpected CONNACK");
      uint8_t flags = r.u8();
      uint8_t rc = r.u8();
      Props pr;
      if (o_.proto == 5 && r.left() > 0 && !read_props(r, &pr)) return fail(c, "malformed CONNACK properties");
      if (!r.ok) return fail(c, "malformed CONNACK");
      if (rc != 0) {
        char b[64];
        std::snprintf(b, sizeof b, "CONNACK refused, code 0x%02x ", rc);
        return fail(c, b + pr.reason);
      }
      c.session_present = flags & 1;
      if (c.wipe) { begin_close(c); return; }
      if (c.role == Role::Pub) {
        Pub& p = pubs_[size_t(c.idx)];
        if (pr.receive_max) p.cap = std::min<unsigned>(o_.inflight, pr.receive_max);
        c.st = St::Ready;
        return;
      }
      // subscriber: SUBSCRIBE
      std::string filter;
      if (o_.shared) filter = "$share/g" + std::to_string(c.idx % o_.shared) + "/" + o_.prefix + "/#";
      else if (o_.sub_filter == "all") filter = o_.prefix + "/#";
      else filter = o_.prefix + "/" + std::to_string(c.idx % o_.pubs);
      std::vector<uint8_t> b;
      c.sub_pid = 1;
      put_u16(b, c.sub_pid);
      if (o_.proto == 5) b.push_back(0);
      put_str(b, filter);
      b.push_back(uint8_t(o_.qos));
      c.out.push_back(0x82);
      put_varint(c.out, uint32_t(b.size()));
      c.out.insert(c.out.end(), b.begin(), b.end());
      c.st = St::WaitSuback;
      mark_dirty(c, id);
      return;
    }
    case 9: {  // SUBACK
      if (c.st != St::WaitSuback) return fail(c, "unexpected SUBACK");
      uint16_t pid = r.u16();
      if (o_.proto == 5 && !read_props(r, nullptr)) return fail(c, "malformed SUBACK properties");
      uint8_t code = r.u8();
      if (!r.ok || pid != c.sub_pid) return fail(c, "malformed SUBACK");
      if (code >= 0x80) {
        char b[48];
        std::snprintf(b, sizeof b, "SUBSCRIBE refused, code 0x%02x", code);
        return fail(c, b);
      }
      if (code != o_.qos) {
        char b[64];
        std::snprintf(b, sizeof b, "SUBSCRIBE granted QoS %d, asked %d", code, o_.qos);
        error(c.cid + ": " + b);
      }
      c.st = St::Ready;
      return;
    }
    case 3:
      return on_publish(c, id, h, r, rnow);
    case 4: case 5: case 7:
      return on_ack(c, id, type, r, rnow ? rnow : mono_ns());
    case 6: {  // PUBREL (we are a QoS 2 receiver)
      if ((h & 0x0f) != 0x02) return fail(c, "malformed PUBREL flags");
      uint16_t pid = r.u16();
      if (!r.ok) return fail(c, "malformed PUBREL");
      if (c.killer) return;
      c.out.push_back(0x70);
      c.out.push_back(0x02);
      put_u16(c.out, pid);
      mark_dirty(c, id);
      return;
    }
    case 13:  // PINGRESP
      return;
    case 14: {  // DISCONNECT from the server (MQTT 5)
      uint8_t rc = len ? r.u8() : 0;
      Props pr;
      if (len > 1) read_props(r, &pr);
      char b[64];
      std::snprintf(b, sizeof b, "DISCONNECT from the broker, reason 0x%02x ", rc);
      return fail(c, b + pr.reason);
    }
    default: {
      char b[48];
      std::snprintf(b, sizeof b, "unexpected packet type %d", type);
      return fail(c, b);
    }
  }
}

void LoadGen::on_publish(Conn& c, uint32_t id, uint8_t h, Rd& r, uint64_t rnow) {
  if (c.role != Role::Sub || (c.st != St::Ready && c.st != St::WaitSuback)) return fail(c, "unexpected PUBLISH");
  int qos = (h >> 1) & 3;
  if (qos == 3) return fail(c, "PUBLISH with QoS 3");
  uint16_t tlen = r.u16();
  r.skip(tlen);
  uint16_t pid = 0;
  if (qos) pid = r.u16();
  if (o_.proto == 5 && !read_props(r, nullptr)) return fail(c, "malformed PUBLISH properties");
  if (!r.ok || (qos && pid == 0)) return fail(c, "malformed PUBLISH");
  const uint8_t* pl = r.p + r.i;
  size_t plen = r.n - r.i;
  if (qos != o_.qos) ++unexpected_qos_;
  ++deliveries_;
  last_delivery_ = last_progress_ = rnow;

  // acknowledge (the killed member never does)
  if (!c.killer && qos) {
    c.out.push_back(qos == 1 ? 0x40 : 0x50);
    c.out.push_back(0x02);
    put_u16(c.out, pid);
    mark_dirty(c, id);
  }

  if (plen < kHeader || get_le32(pl) != kMagic) { ++foreign_; return; }
  uint32_t pubid = get_le32(pl + 4);
  uint64_t seq = get_le64(pl + 8);
  uint64_t ts = get_le64(pl + 16);
  if (pubid >= uint32_t(o_.pubs) || seq >= pubs_[pubid].published) { ++foreign_; return; }
  int rcv = receiver_of(c.idx);
  if (!matches(rcv, int(pubid))) { ++foreign_; return; }

  if (c.killer) {
    ++killer_received_;
    ++c.killer_count;
    c.killer_last = rnow;
    killer_seen_[pubid].set(seq);
    if (o_.kill_after >= 0 && c.killer_count >= uint64_t(o_.kill_after)) kill_member(c, "limit reached");
    return;
  }
  if (in_window(rnow)) {
    ++deliveries_win_;
    hist_.add(rnow > ts ? rnow - ts : 0);
  }
  Track& t = track(rcv, int(pubid));
  if (t.seen.test(seq)) {
    ++t.dups;
    ++dups_;
    return;
  }
  t.seen.set(seq);
  ++t.unique;
  ++pubs_[pubid].unique_recv;
  if (killer_id_ >= 0 && rcv == 0 && killer_seen_[pubid].test(seq)) ++redelivered_;
  if (int64_t(seq) < t.maxseq) {
    if (!o_.shared) { ++t.ooo; ++ooo_; }
  } else {
    t.maxseq = int64_t(seq);
  }
  if (o_.shared) {
    int64_t& m = member_max_[size_t(c.idx) * size_t(o_.pubs) + pubid];
    if (int64_t(seq) < m) ++ooo_members_;
    else m = int64_t(seq);
  }
}

void LoadGen::on_ack(Conn& c, uint32_t id, uint8_t type, Rd& r, uint64_t now) {
  if (c.role != Role::Pub) return fail(c, "unexpected acknowledgement");
  Pub& p = pubs_[size_t(c.idx)];
  uint16_t pid = r.u16();
  uint8_t rc = 0;
  if (o_.proto == 5 && r.left() > 0) {
    rc = r.u8();
    if (r.left() > 0 && !read_props(r, nullptr)) return fail(c, "malformed ack properties");
  }
  if (!r.ok) return fail(c, "malformed ack");
  uint8_t want = type == 7 ? 2 : 1;
  bool right_kind = (type == 4 && o_.qos == 1) || (type != 4 && o_.qos == 2);
  if (!right_kind || p.pid_state[pid] != want) {
    char b[64];
    std::snprintf(b, sizeof b, "unexpected ack type %d for packet id %u", type, pid);
    return fail(c, b);
  }
  if (rc >= 0x80) {
    ++p.rejected;
    char b[64];
    std::snprintf(b, sizeof b, "publish rejected, reason 0x%02x", rc);
    error(c.cid + ": " + b);
    p.pid_state[pid] = 0;
    --p.inflight;
    return;
  }
  if (type == 5) {  // PUBREC -> PUBREL
    p.pid_state[pid] = 2;
    c.out.push_back(0x62);
    c.out.push_back(0x02);
    put_u16(c.out, pid);
    mark_dirty(c, id);
    return;
  }
  p.pid_state[pid] = 0;
  --p.inflight;
  ++p.acked;
  last_ack_ = last_progress_ = now;
  if (in_window(now)) ++pubs_win_;
}

bool LoadGen::can_send(Pub& p, uint64_t now) {
  if (o_.count && p.published >= o_.count) return false;
  if (o_.qos) {
    if (p.infl_blocked) {
      if (p.inflight > p.cap / 2) return false;
      p.infl_blocked = false;
    }
    if (p.inflight >= p.cap) { p.infl_blocked = true; return false; }
  }
  if (o_.window && p.matching) {
    uint64_t w = std::max<uint64_t>(o_.window, 2 * p.matching);
    int64_t outstanding = int64_t(p.published * p.matching) - int64_t(p.unique_recv) - p.written_off;
    if (p.win_blocked) {
      if (outstanding > int64_t(w / 2)) {
        // a full window with no delivery at all for 500 ms: write it off
        if (now - std::max(last_delivery_, p.win_blocked_since) > 500 * kMs) {
          p.written_off += outstanding;
          ++window_stalls_;
          p.win_blocked = false;
        }
        return false;
      }
      p.win_blocked = false;
    }
    if (outstanding >= int64_t(w)) {
      p.win_blocked = true;
      p.win_blocked_since = now;
      return false;
    }
  }
  return true;
}

void LoadGen::emit_publish(Pub& p, int i, uint64_t now) {
  Conn& c = conns_[size_t(o_.subs + i)];
  uint16_t pid = 0;
  if (o_.qos) {
    do { ++p.next_pid; } while (p.next_pid == 0 || p.pid_state[p.next_pid]);
    pid = p.next_pid;
    p.pid_state[pid] = 1;
    ++p.inflight;
  }
  uint64_t seq = p.published++;
  put_le32(p.payload.data(), kMagic);
  put_le32(p.payload.data() + 4, uint32_t(i));
  put_le64(p.payload.data() + 8, seq);
  put_le64(p.payload.data() + 16, now);
  uint32_t rl = uint32_t(2 + p.topic.size() + (o_.qos ? 2 : 0) + (o_.proto == 5 ? 1 : 0) + p.payload.size());
  c.out.push_back(uint8_t(0x30 | (o_.qos << 1)));
  put_varint(c.out, rl);
  put_str(c.out, p.topic);
  if (o_.qos) put_u16(c.out, pid);
  if (o_.proto == 5) c.out.push_back(0);
  c.out.insert(c.out.end(), p.payload.begin(), p.payload.end());
  if (!o_.qos) {
    last_write_ = now;
    if (in_window(now)) ++pubs_win_;
  }
}

void LoadGen::produce(uint64_t now) {
  for (int i = 0; i < o_.pubs; ++i) {
    Conn& c = conns_[size_t(o_.subs + i)];
    if (c.st != St::Ready) continue;
    if (unsent(c) > (4u << 20)) continue;  // let TCP drain
    Pub& p = pubs_[size_t(i)];
    int n = 0;
    while (n < 1024 && can_send(p, now)) {
      emit_publish(p, i, now);
      ++n;
    }
    if (n) mark_dirty(c, uint32_t(o_.subs + i));
  }
}

void LoadGen::tick(uint64_t now) {
  if (!sampled_begin_ && now >= win_begin_) {
    sampled_begin_ = true;
    bt_begin_ = broker_ticks();
    tool_cpu_begin_ = cpu_ns();
    wall_begin_ = now;
  }
  if (!sampled_end_ && now >= win_end_) {
    sampled_end_ = true;
    bt_end_ = broker_ticks();
    tool_cpu_end_ = cpu_ns();
    wall_end_ = now;
  }
  if (publishing_) produce(now);
  // the member that stops acking gives up after 1 s without new messages
  if (killer_id_ >= 0) {
    Conn& k = conns_[size_t(killer_id_)];
    if (k.st == St::Ready && k.killer_count > 0 && now - k.killer_last > kSec) kill_member(k, "1 s without new messages");
  }
  // keep alive
  if (o_.keepalive && now - last_ka_check_ > 100 * kMs) {
    last_ka_check_ = now;
    uint64_t half = uint64_t(o_.keepalive) * kSec / 2;
    for (size_t id = 0; id < conns_.size(); ++id) {
      Conn& c = conns_[id];
      if (c.st == St::Ready && c.fd >= 0 && now - c.last_send > half && unsent(c) == 0) {
        c.out.push_back(0xC0);
        c.out.push_back(0x00);
        mark_dirty(c, uint32_t(id));
        c.last_send = now;
      }
    }
  }
}

void LoadGen::loop_once(int timeout_ms) {
  epoll_event evs[256];
  int n = epoll_wait(ep_, evs, 256, timeout_ms);
  if (n < 0 && errno != EINTR) {
    error(std::string("epoll_wait: ") + std::strerror(errno));
    n = 0;
  }
  for (int k = 0; k < n; ++k) {
    uint32_t id = evs[k].data.u32;
    Conn& c = conns_[id];
    if (c.fd < 0) continue;
    uint32_t e = evs[k].events;
    if (c.st == St::Connecting) {
      if (!(e & (EPOLLOUT | EPOLLERR | EPOLLHUP))) continue;
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err) { fail(c, std::string("connect: ") + std::strerror(err)); continue; }
      c.st = St::WaitConnack;
      mark_dirty(c, id);
      continue;
    }
    if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c, id);
    if (c.fd >= 0 && (e & EPOLLOUT)) mark_dirty(c, id);
  }
  tick(mono_ns());
  for (size_t k = 0; k < dirty_.size(); ++k) flush(conns_[dirty_[k]], dirty_[k]);
  dirty_.clear();
}

bool LoadGen::connect_phase(const std::vector<int>& ids, bool wipe, const char* what) {
  uint64_t deadline = std::min(deadline_all_, mono_ns() + uint64_t(o_.connect_timeout * double(kSec)));
  size_t next = 0;
  const size_t kConcurrent = 64;
  for (;;) {
    size_t busy = 0, done = 0;
    for (size_t k = 0; k < next; ++k) {
      St s = conns_[size_t(ids[k])].st;
      bool fin = wipe ? (s == St::Closed || s == St::Failed)
                      : (s == St::Ready || s == St::Failed || s == St::Killed);
      fin ? ++done : ++busy;
    }
    while (busy < kConcurrent && next < ids.size()) {
      open_conn(ids[next++], wipe);
      ++busy;
    }
    if (done == ids.size()) break;
    uint64_t now = mono_ns();
    if (now >= deadline) {
      for (int id : ids) {
        Conn& c = conns_[size_t(id)];
        if (wipe && c.st == St::Closing) { close_fd(c); c.st = St::Closed; continue; }
        if (c.st != St::Ready && c.st != St::Closed && c.st != St::Killed) fail(c, std::string(what) + ": timed out");
      }
      return false;
    }
    loop_once(10);
  }
  for (int id : ids)
    if (conns_[size_t(id)].st == St::Failed) return false;
  return true;
}

bool LoadGen::close_phase(const std::vector<int>& ids, const char* what) {
  for (int id : ids) {
    Conn& c = conns_[size_t(id)];
    if (c.fd >= 0 && c.st != St::Closing) begin_close(c);
  }
  for (size_t k = 0; k < dirty_.size(); ++k) flush(conns_[dirty_[k]], dirty_[k]);
  dirty_.clear();
  uint64_t deadline = mono_ns() + 3 * kSec;
  for (;;) {
    bool open = false;
    for (int id : ids)
      if (conns_[size_t(id)].fd >= 0) open = true;
    if (!open) return true;
    if (mono_ns() >= deadline) {
      for (int id : ids) {
        Conn& c = conns_[size_t(id)];
        if (c.fd >= 0) { close_fd(c); c.st = St::Closed; }
      }
      std::printf("# note: %s: the broker did not close every connection within 3 s\n", what);
      return false;
    }
    loop_once(10);
  }
}

uint64_t LoadGen::expected_total() const {
  uint64_t e = 0;
  for (const Pub& p : pubs_) e += p.published * p.matching;
  return e;
}

uint64_t LoadGen::unique_total() const {
  uint64_t u = 0;
  for (const Pub& p : pubs_) u += p.unique_recv;
  return u;
}

bool LoadGen::drained() const {
  for (const Pub& p : pubs_)
    if (p.inflight) return false;
  return unique_total() >= expected_total();
}

long long LoadGen::broker_ticks() const {
  if (o_.broker_pid <= 0) return -1;
  std::ifstream f("/proc/" + std::to_string(o_.broker_pid) + "/stat");
  std::string s;
  if (!std::getline(f, s)) return -1;
  size_t rp = s.rfind(')');
  if (rp == std::string::npos) return -1;
  std::istringstream is(s.substr(rp + 2));
  std::string tok;
  long long ut = -1, st = -1;
  // fields after the command: 3=state ... 14=utime 15=stime
  for (int field = 3; field <= 15 && (is >> tok); ++field) {
    if (field == 14) ut = std::atoll(tok.c_str());
    if (field == 15) st = std::atoll(tok.c_str());
  }
  return ut < 0 || st < 0 ? -1 : ut + st;
}

long long LoadGen::broker_rss_kb() const {
  if (o_.broker_pid <= 0) return -1;
  std::ifstream f("/proc/" + std::to_string(o_.broker_pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  return -1;
}

int LoadGen::run() {
  if (!resolve()) return 2;
  build();
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0) { std::perror("epoll_create1"); return 3; }
  t0_ = mono_ns();
  deadline_all_ = t0_ + uint64_t(o_.max_time * double(kSec));
  rss_start_ = broker_rss_kb();
  if (o_.broker_pid > 0 && rss_start_ < 0)
    std::printf("# warning: cannot read /proc/%ld (broker pid)\n", o_.broker_pid);

  {
    char mode[64];
    if (o_.count) std::snprintf(mode, sizeof mode, "count=%llu", (unsigned long long)o_.count);
    else std::snprintf(mode, sizeof mode, "duration=%gs warmup=%gs", o_.duration, o_.warmup);
    std::string extra;
    if (o_.durable) extra += " durable";
    if (o_.shared) extra += " shared=" + std::to_string(o_.shared);
    if (o_.kill_after >= 0) extra += " kill-member-after=" + std::to_string(o_.kill_after);
    if (o_.ws) extra += " websocket=" + o_.ws_path;
    std::printf("# petrel_loadgen %s:%d proto=%d qos=%d pubs=%d subs=%d payload=%zu %s%s\n", o_.host.c_str(),
                o_.port, o_.proto, o_.qos, o_.pubs, o_.subs, o_.payload, mode, extra.c_str());
  }

  std::vector<int> sub_ids, pub_ids;
  for (int j = 0; j < o_.subs; ++j) sub_ids.push_back(j);
  for (int i = 0; i < o_.pubs; ++i) pub_ids.push_back(o_.subs + i);

  bool ok = true;
  if (o_.durable && !sub_ids.empty()) {
    ok = connect_phase(sub_ids, true, "session wipe before the run");
    for (int id : sub_ids) conns_[size_t(id)].st = St::Idle;
  }
  uint64_t tc = mono_ns();
  if (ok) ok = connect_phase(sub_ids, false, "subscriber connect");
  if (ok) ok = connect_phase(pub_ids, false, "publisher connect");
  if (ok) {
    int present = 0;
    for (int id : sub_ids) present += conns_[size_t(id)].session_present;
    std::printf("# connected %d subscribers and %d publishers in %.1f ms%s\n", o_.subs, o_.pubs,
                double(mono_ns() - tc) / 1e6,
                present ? (" (" + std::to_string(present) + " sessions present!)").c_str() : "");
    if (present) error("a durable session survived the wipe before the run");
  }

  if (ok && o_.settle > 0) usleep(useconds_t(o_.settle * 1e6));

  // publish phase
  bool aborted = false;
  if (ok) {
    t_start_ = mono_ns();
    last_progress_ = last_delivery_ = t_start_;
    if (o_.count) {
      win_begin_ = t_start_;
    } else {
      win_begin_ = t_start_ + uint64_t(o_.warmup * double(kSec));
      pub_end_ = win_end_ = t_start_ + uint64_t(o_.duration * double(kSec));
    }
    publishing_ = true;
    for (;;) {
      uint64_t now = mono_ns();
      if (now >= pub_end_) break;
      if (now >= deadline_all_) { error("--max-time reached while publishing"); aborted = true; break; }
      if (o_.count) {
        bool all = true;
        for (const Pub& p : pubs_) if (p.published < o_.count) all = false;
        if (all) break;
      }
      bool any_pub = false;
      for (int id : pub_ids) if (conns_[size_t(id)].st == St::Ready) any_pub = true;
      if (!any_pub) { error("no publisher left"); aborted = true; break; }
      // poll without sleeping when a publisher may send, else wait for events
      bool ready = false;
      for (int i = 0; i < o_.pubs && !ready; ++i) {
        Pub& p = pubs_[size_t(i)];
        Conn& c = conns_[size_t(o_.subs + i)];
        if (c.st != St::Ready) continue;
        if (o_.count && p.published >= o_.count) continue;
        bool infl = !o_.qos || (!p.infl_blocked && p.inflight < p.cap);
        bool win = !p.win_blocked;
        ready = infl && win && unsent(c) <= (4u << 20);
      }
      loop_once(ready ? 0 : 5);
    }
    publishing_ = false;
    // drain
    uint64_t dl = std::min(deadline_all_, mono_ns() + uint64_t(o_.drain * double(kSec)));
    uint64_t idle = uint64_t(o_.drain_idle * double(kSec));
    last_progress_ = std::max(last_progress_, mono_ns());
    while (!drained()) {
      uint64_t now = mono_ns();
      if (now >= dl || now - last_progress_ > idle) break;
      loop_once(5);
    }
    if (!drained())
      std::printf("# drain ended with %llu deliveries and %u acknowledgements outstanding\n",
                  (unsigned long long)(expected_total() - std::min(expected_total(), unique_total())),
                  [&] { unsigned s = 0; for (auto& p : pubs_) s += p.inflight; return s; }());
    if (o_.count) {
      uint64_t end = std::max({last_delivery_, last_ack_, last_write_, t_start_ + 1});
      win_end_ = end;
      // count mode: every delivery and publish counted over the whole run
      deliveries_win_ = deliveries_ - killer_received_;
      pubs_win_ = 0;
      for (auto& p : pubs_) pubs_win_ += o_.qos ? p.acked : p.published;
      wall_end_ = end;
      bt_end_ = broker_ticks();
      tool_cpu_end_ = cpu_ns();
      sampled_end_ = true;
    } else {
      tick(mono_ns());  // make sure the end-of-window sample was taken
    }
  }
  rss_end_ = broker_rss_kb();

  // wind down: DISCONNECT everything, then wipe durable sessions
  std::vector<int> all_ids;
  for (size_t id = 0; id < conns_.size(); ++id)
    if (conns_[id].fd >= 0) all_ids.push_back(int(id));
  close_phase(all_ids, "disconnect");
  if (o_.durable && !sub_ids.empty()) {
    for (int id : sub_ids) conns_[size_t(id)].st = St::Idle;
    uint64_t saved = deadline_all_;
    deadline_all_ = std::max(deadline_all_, mono_ns() + 5 * kSec);  // cleanup runs even after --max-time
    if (!connect_phase(sub_ids, true, "session wipe after the run"))
      std::printf("# warning: not every durable session could be removed\n");
    deadline_all_ = saved;
  }
  ::close(ep_);

  // ------------------------------------------------------------ report
  uint64_t expected = 0, unique = 0, dups = 0;
  uint64_t unacked = 0, rejected = 0, published = 0;
  for (const Pub& p : pubs_) {
    expected += p.published * p.matching;
    unique += p.unique_recv;
    unacked += p.inflight;
    rejected += p.rejected;
    published += p.published;
  }
  dups = dups_;
  uint64_t lost = expected > unique ? expected - unique : 0;
  double win_s = 0;
  if (sampled_begin_ && sampled_end_ && wall_end_ > wall_begin_) win_s = double(wall_end_ - wall_begin_) / 1e9;
  else if (!o_.count && ok) win_s = o_.duration - o_.warmup;
  double pub_rate = win_s > 0 ? double(pubs_win_) / win_s : 0;
  double deliver_rate = win_s > 0 ? double(deliveries_win_) / win_s : 0;
  double broker_cpu = -1;
  if (bt_begin_ >= 0 && bt_end_ >= 0 && win_s > 0)
    broker_cpu = double(bt_end_ - bt_begin_) / double(sysconf(_SC_CLK_TCK)) / win_s * 100.0;
  double tool_cpu = win_s > 0 && tool_cpu_end_ > tool_cpu_begin_ ? double(tool_cpu_end_ - tool_cpu_begin_) / 1e9 / win_s * 100.0 : 0;

  bool correct = ok && !aborted && errors_ == 0 && foreign_ == 0;
  if (o_.qos > 0 && (lost || unacked || rejected)) correct = false;
  if (o_.qos == 2 && dups) correct = false;
  if (!o_.shared && ooo_) correct = false;

  std::printf("# published %llu messages; pub_rate %.0f msg/s, deliver_rate %.0f msg/s over %.2f s\n",
              (unsigned long long)published, pub_rate, deliver_rate, win_s);
  std::printf("# latency us: p50 %.1f  p90 %.1f  p99 %.1f  p999 %.1f  max %.1f  (%llu samples)\n",
              hist_.quantile(0.50) / 1e3, hist_.quantile(0.90) / 1e3, hist_.quantile(0.99) / 1e3,
              hist_.quantile(0.999) / 1e3, double(hist_.max()) / 1e3, (unsigned long long)hist_.count());
  std::printf("# expected %llu unique %llu lost %llu dups %llu ooo %llu%s unacked %llu window_stalls %llu\n",
              (unsigned long long)expected, (unsigned long long)unique, (unsigned long long)lost,
              (unsigned long long)dups, (unsigned long long)ooo_,
              o_.shared ? (" ooo_within_members " + std::to_string(ooo_members_)).c_str() : "",
              (unsigned long long)unacked, (unsigned long long)window_stalls_);
  if (killer_id_ >= 0)
    std::printf("# killed member: received %llu without acking; %s; redelivered to other members %llu\n",
                (unsigned long long)killer_received_, killed_ ? "closed abruptly" : "was never killed",
                (unsigned long long)redelivered_);
  if (o_.broker_pid > 0) {
    char cpu[32] = "n/a";
    if (broker_cpu >= 0) std::snprintf(cpu, sizeof cpu, "%.1f %%", broker_cpu);
    std::printf("# broker cpu %s, VmRSS %lld kB -> %lld kB; tool cpu %.1f %%\n", cpu, rss_start_, rss_end_,
                tool_cpu);
  }
  else
    std::printf("# tool cpu %.1f %%\n", tool_cpu);
  if (o_.qos == 0 && lost)
    std::printf("# note: %llu QoS 0 deliveries lost (allowed by the protocol)\n", (unsigned long long)lost);
  if (unexpected_qos_)
    std::printf("# note: %llu deliveries arrived with a QoS other than %d\n", (unsigned long long)unexpected_qos_, o_.qos);
  if (!correct) {
    std::printf("# !!! CORRECTNESS PROBLEM\n");
    for (const auto& e : errlog_) std::printf("# !!!   %s\n", e.c_str());
    if (errors_ > errlog_.size()) std::printf("# !!!   ... %llu errors in all\n", (unsigned long long)errors_);
    if (foreign_) std::printf("# !!!   %llu payloads without a valid header\n", (unsigned long long)foreign_);
    if (unacked) std::printf("# !!!   %llu publishes never acknowledged\n", (unsigned long long)unacked);
    int shown = 0;
    for (int rcv = 0; rcv < receivers_ && shown < 10; ++rcv) {
      for (int i = 0; i < o_.pubs && shown < 10; ++i) {
        if (!matches(rcv, i)) continue;
        const Track& t = track(rcv, i);
        uint64_t exp = pubs_[size_t(i)].published;
        if (t.unique == exp && t.ooo == 0 && (o_.qos != 2 || t.dups == 0)) continue;
        uint64_t gaps = uint64_t(t.maxseq + 1) - t.unique;
        uint64_t tail = exp - uint64_t(t.maxseq + 1);
        std::printf("# !!!   %s%d <- pub %d: expected %llu unique %llu (gaps %llu, tail %llu) dups %llu ooo %llu\n",
                    o_.shared ? "group g" : "sub ", rcv, i, (unsigned long long)exp,
                    (unsigned long long)t.unique, (unsigned long long)gaps, (unsigned long long)tail,
                    (unsigned long long)t.dups, (unsigned long long)t.ooo);
        ++shown;
      }
    }
  }

  auto num_or_null = [](double v, const char* fmt) {
    if (v < 0) return std::string("null");
    char b[64];
    std::snprintf(b, sizeof b, fmt, v);
    return std::string(b);
  };
  std::printf(
      "{\"scenario\":\"loadgen\",\"label\":\"%s\",\"transport\":\"%s\",\"proto\":%d,\"qos\":%d,\"pubs\":%d,\"subs\":%d,"
      "\"durable\":%s,\"shared\":%d,\"pub_rate\":%.1f,\"deliver_rate\":%.1f,\"expected\":%llu,"
      "\"unique\":%llu,\"lost\":%llu,\"dups\":%llu,\"ooo\":%llu,\"lat_p50_us\":%.1f,\"lat_p90_us\":%.1f,"
      "\"lat_p99_us\":%.1f,\"lat_p999_us\":%.1f,\"lat_max_us\":%.1f,\"broker_cpu_pct\":%s,"
      "\"broker_rss_kb_start\":%s,\"broker_rss_kb_end\":%s,\"payload\":%zu,\"duration_s\":%.3f,"
      "\"published\":%llu,\"unacked\":%llu,\"window_stalls\":%llu,\"redelivered\":%llu,"
      "\"tool_cpu_pct\":%.1f,\"errors\":%llu,\"correct\":%s}\n",
      json_escape(o_.label).c_str(), o_.ws ? "ws" : "tcp", o_.proto, o_.qos, o_.pubs, o_.subs, o_.durable ? "true" : "false", o_.shared,
      pub_rate, deliver_rate, (unsigned long long)expected, (unsigned long long)unique, (unsigned long long)lost,
      (unsigned long long)dups, (unsigned long long)ooo_, hist_.quantile(0.50) / 1e3, hist_.quantile(0.90) / 1e3,
      hist_.quantile(0.99) / 1e3, hist_.quantile(0.999) / 1e3, double(hist_.max()) / 1e3,
      num_or_null(broker_cpu, "%.1f").c_str(), num_or_null(double(rss_start_), "%.0f").c_str(),
      num_or_null(double(rss_end_), "%.0f").c_str(), o_.payload, win_s, (unsigned long long)published,
      (unsigned long long)unacked, (unsigned long long)window_stalls_, (unsigned long long)redelivered_, tool_cpu,
      (unsigned long long)errors_, correct ? "true" : "false");
  std::fflush(stdout);
  return correct ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, on_alarm);
  // safety net: the run, its drain and its clean-up all end well before this
  alarm(unsigned(std::ceil(o.max_time)) + 20);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  LoadGen lg(o);
  return lg.run();
}
