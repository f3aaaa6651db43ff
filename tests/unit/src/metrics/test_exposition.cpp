// The Prometheus text of /metrics: every line is a HELP, a TYPE or a sample
// in the exposition format, whatever the names in the labels hold;
// histograms are cumulative and end in +Inf.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <regex>
#include <sstream>

#include "src/metrics/exposition.h"
#include "src/metrics/snapshot.h"

namespace petrel {
namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// One line of the format, strictly: the families are announced before
// their samples, label values are quoted and escaped, values are floats.
void expectValidExposition(const std::string& text) {
  ASSERT_FALSE(text.empty());
  ASSERT_EQ(text.back(), '\n');
  static const std::regex help(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (?:[^\\\n]|\\\\|\\n)*)");
  static const std::regex type(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
  static const std::regex sample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*")*\})? ([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN)))");
  std::map<std::string, std::string> types;
  std::string family;
  for (const std::string& l : lines(text)) {
    std::smatch m;
    if (std::regex_match(l, m, help)) {
      family = m[1];
      EXPECT_EQ(types.count(family), 0u) << "family twice: " << l;
    } else if (std::regex_match(l, m, type)) {
      EXPECT_EQ(m[1], family) << l;
      types[family] = m[2];
    } else if (std::regex_match(l, m, sample)) {
      const std::string name = m[1];
      const bool ok = name == family ||
                      (types[family] == "histogram" &&
                       (name == family + "_bucket" || name == family + "_sum" || name == family + "_count"));
      EXPECT_TRUE(ok) << "sample outside its family: " << l;
      if (types[family] == "counter") {
        EXPECT_TRUE(name.size() > 6 && name.substr(name.size() - 6) == "_total") << l;
      }
    } else {
      ADD_FAILURE() << "not an exposition line: '" << l << "'";
    }
  }
}

TEST(Exposition, FamiliesSamplesAndEscaping) {
  Exposition e;
  e.family("petrel_x_total", "counter", "Help with a \\ and a\nline feed.");
  e.sample("petrel_x_total", uint64_t{42}, {{"group", "a\"b\\c\nd"}, {"filter", "x/#"}});
  e.family("petrel_g", "gauge", "A gauge.");
  e.sample("petrel_g", 0.25);
  const std::string t = e.text();
  EXPECT_EQ(t,
            "# HELP petrel_x_total Help with a \\\\ and a\\nline feed.\n"
            "# TYPE petrel_x_total counter\n"
            "petrel_x_total{group=\"a\\\"b\\\\c\\nd\",filter=\"x/#\"} 42\n"
            "# HELP petrel_g A gauge.\n"
            "# TYPE petrel_g gauge\n"
            "petrel_g 0.25\n");
  expectValidExposition(t);
}

TEST(Exposition, Numbers) {
  EXPECT_EQ(Exposition::number(0.5), "0.5");
  EXPECT_EQ(Exposition::number(3), "3");
  EXPECT_EQ(Exposition::number(INFINITY), "+Inf");
  EXPECT_EQ(Exposition::number(-INFINITY), "-Inf");
  EXPECT_EQ(Exposition::number(NAN), "NaN");
  EXPECT_EQ(Exposition::number(0.00025), "0.00025");
  EXPECT_EQ(Exposition::number(1e-4), "0.0001");
  EXPECT_EQ(Exposition::number(1796039826.5), "1796039826.5");
  EXPECT_DOUBLE_EQ(std::stod(Exposition::number(1e-9)), 1e-9);
}

TEST(Exposition, Names) {
  EXPECT_TRUE(Exposition::validName("petrel_a:b_1"));
  EXPECT_FALSE(Exposition::validName("1abc"));
  EXPECT_FALSE(Exposition::validName("a-b"));
  EXPECT_FALSE(Exposition::validName(""));
  EXPECT_TRUE(Exposition::validLabelName("le"));
  EXPECT_FALSE(Exposition::validLabelName("a:b"));
}

TEST(Exposition, HistogramIsCumulativeAndEndsInInf) {
  Exposition e;
  const double bounds[] = {0.001, 0.01, 0.1};
  const uint64_t counts[] = {2, 0, 3, 1};  // per bucket; the last is above 0.1
  e.histogram("petrel_h_seconds", "A histogram.", bounds, counts, 3, 0.75);
  EXPECT_EQ(e.text(),
            "# HELP petrel_h_seconds A histogram.\n"
            "# TYPE petrel_h_seconds histogram\n"
            "petrel_h_seconds_bucket{le=\"0.001\"} 2\n"
            "petrel_h_seconds_bucket{le=\"0.01\"} 2\n"
            "petrel_h_seconds_bucket{le=\"0.1\"} 5\n"
            "petrel_h_seconds_bucket{le=\"+Inf\"} 6\n"
            "petrel_h_seconds_sum 0.75\n"
            "petrel_h_seconds_count 6\n");
  expectValidExposition(e.text());
}

MetricsSnapshot sample() {
  MetricsSnapshot s;
  s.version = "1.2.3";
  s.uptime_s = 12.5;
  s.stats.received_by_qos[0] = 5;
  s.stats.received_by_qos[1] = 7;
  s.stats.sent_by_qos[2] = 3;
  s.stats.messages_dropped = 4;
  s.stats.dropped_queue_full = 1;
  s.stats.messages_expired = 3;
  s.stats.clients_connected = 2;
  s.stats.connections_refused[static_cast<size_t>(Refusal::Auth)] = 9;
  s.groups.push_back({"jobs", "work/#", 2, 1, 10, 1, 20, 2, 0});
  s.groups.push_back({"we\"ird\\", "a/\nb", 1, 1, 30, 0, 0, 0, 0});
  s.store_enabled = true;
  s.store_used_bytes = 1 << 20;
  s.commit_bounds = {0.001, 0.01};
  s.commit_counts = {5, 2, 1};
  s.commit_sum_s = 0.05;
  s.lag_bounds = {0.001, 0.01};
  s.lag_counts = {10, 0, 0};
  s.delayed_enabled = true;
  s.delayed_pending = 3;
  s.bridges.push_back({"hq", true, 100, 50, 2, 0, 1});
  MetricsSnapshot::Rates r;
  r.received = 1.5;
  r.sent = 2;
  s.rates = r;
  s.history = {r, r};
  s.top_topics = {{"sensors/\"1\"", 12.5}};
  return s;
}

TEST(Metrics, PrometheusTextOfASnapshotIsValidAndComplete) {
  const std::string t = prometheusText(sample());
  expectValidExposition(t);
  for (const char* want : {
           "petrel_build_info{version=\"1.2.3\"} 1\n",
           "petrel_messages_received_total{qos=\"1\"} 7\n",
           "petrel_messages_sent_total{qos=\"2\"} 3\n",
           "petrel_messages_dropped_total{reason=\"expired\"} 3\n",
           "petrel_messages_dropped_total{reason=\"queue_full\"} 1\n",
           "petrel_connections_refused_total{reason=\"auth\"} 9\n",
           "petrel_clients_connected 2\n",
           "petrel_share_group_queued_messages{group=\"jobs\",filter=\"work/#\"} 10\n",
           "petrel_share_group_queued_messages{group=\"we\\\"ird\\\\\",filter=\"a/\\nb\"} 30\n",
           "petrel_store_commit_duration_seconds_bucket{le=\"+Inf\"} 8\n",
           "petrel_store_commit_duration_seconds_count 8\n",
           "petrel_loop_lag_seconds_count 10\n",
           "petrel_delayed_pending_messages 3\n",
           "petrel_bridge_up{bridge=\"hq\"} 1\n",
           "petrel_bridge_forwarded_total{bridge=\"hq\"} 100\n",
       })
    EXPECT_NE(t.find(want), std::string::npos) << want;
}

TEST(Metrics, StoreAndBridgeFamiliesOnlyWhenThereAreAny) {
  MetricsSnapshot s;
  const std::string t = prometheusText(s);
  expectValidExposition(t);
  EXPECT_NE(t.find("petrel_store_enabled 0\n"), std::string::npos);
  EXPECT_EQ(t.find("petrel_store_used_bytes"), std::string::npos);
  EXPECT_EQ(t.find("petrel_bridge_up"), std::string::npos);
  EXPECT_EQ(t.find("petrel_loop_lag_seconds_bucket"), std::string::npos);  // not measured
}

}  // namespace
}  // namespace petrel
