// The wire codec per packet type: encoding into a connection's output
// buffer and decoding a frame, for MQTT 3.1.1 and 5.0.
#include <benchmark/benchmark.h>

#include <string>

#include "mqtt/decoder.h"
#include "mqtt/encoder.h"

namespace petrel::mqtt {
namespace {

Version level(const benchmark::State& state) { return state.range(0) == 5 ? Version::V5 : Version::V311; }

Frame frameOf(const std::string& bytes) {
  Frame f;
  if (peekFrame(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), kMaxPacketSize, f) !=
      FrameStatus::Ok)
    std::abort();
  return f;
}

// A 64-byte QoS 1 PUBLISH, appended to a buffer reused as a connection's is.
void BM_EncodePublish(benchmark::State& state) {
  const Version v = level(state);
  const std::string payload(64, 'p');
  std::string out;
  uint16_t id = 0;
  for (auto _ : state) {
    out.clear();
    encodePublish(out, v, "fleet/site7/dev42/telemetry", payload, 1, false, false, ++id | 1, nullptr);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * out.size()));
}
BENCHMARK(BM_EncodePublish)->Arg(4)->Arg(5);

void BM_DecodePublish(benchmark::State& state) {
  const Version v = level(state);
  std::string bytes;
  encodePublish(bytes, v, "fleet/site7/dev42/telemetry", std::string(64, 'p'), 1, false, false, 7, nullptr);
  const Frame f = frameOf(bytes);
  for (auto _ : state) {
    Publish p;
    if (parse(f, v, p) != Reason::Success) std::abort();
    benchmark::DoNotOptimize(p.payload.data());
  }
}
BENCHMARK(BM_DecodePublish)->Arg(4)->Arg(5);

// A PUBLISH with MQTT 5 properties a request/response client sends.
void BM_DecodePublishWithProperties(benchmark::State& state) {
  Properties props;
  props.content_type = "application/json";
  props.response_topic = "replies/client-42";
  props.correlation_data = std::string(16, 'c');
  props.user_properties = {{"trace", "0af7651916cd43dd8448eb211c80319c"}};
  std::string bytes;
  encodePublish(bytes, Version::V5, "fleet/site7/dev42/cmd", std::string(64, 'p'), 1, false, false, 7, &props);
  const Frame f = frameOf(bytes);
  for (auto _ : state) {
    Publish p;
    if (parse(f, Version::V5, p) != Reason::Success) std::abort();
    benchmark::DoNotOptimize(p.props.content_type);
  }
}
BENCHMARK(BM_DecodePublishWithProperties);

void BM_EncodePuback(benchmark::State& state) {
  std::string out;
  uint16_t id = 0;
  for (auto _ : state) {
    out.clear();
    encodeAck(out, PacketType::Puback, ++id | 1);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_EncodePuback);

void BM_DecodePuback(benchmark::State& state) {
  const Version v = level(state);
  std::string bytes;
  encodeAck(bytes, PacketType::Puback, 7);
  const Frame f = frameOf(bytes);
  for (auto _ : state) {
    Ack a;
    if (parse(f, v, a) != Reason::Success) std::abort();
    benchmark::DoNotOptimize(a.packet_id);
  }
}
BENCHMARK(BM_DecodePuback)->Arg(4)->Arg(5);

void BM_DecodeSubscribe(benchmark::State& state) {
  const Version v = level(state);
  Subscribe s;
  s.packet_id = 3;
  for (const char* filter : {"fleet/+/dev42/#", "alerts/#", "$share/workers/jobs/+"}) {
    SubscribeTopic t;
    t.filter = filter;
    t.qos = 1;
    s.topics.push_back(t);
  }
  std::string bytes;
  encode(s, v, bytes);
  const Frame f = frameOf(bytes);
  for (auto _ : state) {
    Subscribe out;
    if (parse(f, v, out) != Reason::Success) std::abort();
    benchmark::DoNotOptimize(out.topics.data());
  }
}
BENCHMARK(BM_DecodeSubscribe)->Arg(4)->Arg(5);

void BM_DecodeConnect(benchmark::State& state) {
  Connect c;
  c.version = level(state);
  c.clean_start = false;
  c.keepalive = 60;
  c.client_id = "sensor-000042";
  c.username = "fleet";
  c.password = "a long enough device secret";
  if (c.version == Version::V5) c.props.session_expiry_interval = 1800;
  std::string bytes;
  encode(c, bytes);
  const Frame f = frameOf(bytes);
  for (auto _ : state) {
    Connect out;
    if (parseConnect(f, out) != Reason::Success) std::abort();
    benchmark::DoNotOptimize(out.client_id.data());
  }
}
BENCHMARK(BM_DecodeConnect)->Arg(4)->Arg(5);

// Cutting frames out of a read buffer full of small PUBLISHes.
void BM_PeekFrames(benchmark::State& state) {
  std::string buf;
  for (int i = 0; i < 1000; ++i)
    encodePublish(buf, Version::V311, "fleet/site7/dev42/telemetry", std::string(64, 'p'), 1, false, false, 1 + i,
                  nullptr);
  for (auto _ : state) {
    size_t pos = 0, n = 0;
    Frame f;
    while (pos < buf.size() &&
           peekFrame(reinterpret_cast<const uint8_t*>(buf.data()) + pos, buf.size() - pos, kMaxPacketSize, f) ==
               FrameStatus::Ok) {
      pos += f.total_len;
      ++n;
    }
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * 1000));
}
BENCHMARK(BM_PeekFrames);

}  // namespace
}  // namespace petrel::mqtt
