// `workers: auto` and the cgroup's CPU quota, `limits.max_output_memory:
// auto` and its memory limit: hierarchies laid out in a scratch directory
// as the kernel shows them (cgroup v1 and v2), read through the
// /proc/self/cgroup and /proc/self/mountinfo texts that name them.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "src/util/cgroup_limits.h"

namespace petrel {
namespace {

class CgroupLimits : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/petrel-cgroup-limits-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  // Writes `text` to `rel` under the scratch directory, making its directories.
  void put(const std::string& rel, const std::string& text) {
    const std::filesystem::path p = root_ + "/" + rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::string at(const std::string& rel) const { return root_ + "/" + rel; }

  // mountinfo lines as the kernel writes them.
  std::string v1Mount(const std::string& root, const std::string& point, const std::string& super) const {
    return "35 25 0:30 " + root + " " + point + " rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw," +
           super + "\n";
  }
  std::string v2Mount(const std::string& root, const std::string& point) const {
    return "29 23 0:26 " + root + " " + point + " rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
           "rw,nsdelegate,memory_recursiveprot\n";
  }
  // A v1 host (with v2's hierarchy mounted too, empty): memory and cpu in
  // hierarchies of their own, cpu shared with cpuacct.
  const std::string v1Cgroup_ =
      "12:memory:/docker/abc\n"
      "4:cpu,cpuacct:/docker/abc\n"
      "0::/docker/abc\n";
  std::string v1Mounts() const {
    return other_mounts_ + v1Mount("/", at("mem"), "memory") + v1Mount("/", at("cpu"), "cpu,cpuacct") +
           v2Mount("/", at("unified"));
  }
  const std::string other_mounts_ =
      "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n"
      "23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw\n";

  std::string root_;
};

TEST_F(CgroupLimits, CgroupV2QuotaOfTheProcessesCgroup) {
  put("cg/system.slice/petrel.service/cpu.max", "150000 100000\n");
  put("cg/system.slice/cpu.max", "max 100000\n");
  const auto q = cgroupCpuQuota("0::/system.slice/petrel.service\n", other_mounts_ + v2Mount("/", at("cg")));
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->quota_us, 150000);
  EXPECT_EQ(q->period_us, 100000);
  EXPECT_DOUBLE_EQ(q->cpus(), 1.5);
  EXPECT_EQ(q->wholeCpus(), 2u);
  EXPECT_EQ(q->where, at("cg/system.slice/petrel.service"));
}

TEST_F(CgroupLimits, AParentsLowerLimitBinds) {
  put("cg/kubepods/pod1/cpu.max", "50000 100000\n");  // half a CPU for the pod
  put("cg/kubepods/pod1/petrel/cpu.max", "max 100000\n");
  put("cg/kubepods/cpu.max", "800000 100000\n");
  const auto q = cgroupCpuQuota("0::/kubepods/pod1/petrel\n", v2Mount("/", at("cg")));
  ASSERT_TRUE(q.has_value());
  EXPECT_DOUBLE_EQ(q->cpus(), 0.5);
  EXPECT_EQ(q->wholeCpus(), 1u);
  EXPECT_EQ(q->where, at("cg/kubepods/pod1"));
  // The parent's is lower than the process's own.
  put("cg/kubepods/pod1/petrel/cpu.max", "400000 100000\n");
  const auto lower = cgroupCpuQuota("0::/kubepods/pod1/petrel\n", v2Mount("/", at("cg")));
  ASSERT_TRUE(lower.has_value());
  EXPECT_EQ(lower->where, at("cg/kubepods/pod1"));
  EXPECT_DOUBLE_EQ(lower->cpus(), 0.5);
  // Periods differ from level to level: compared as quota over period.
  put("cg/kubepods/pod1/petrel/cpu.max", "20000 10000\n");   // 2 CPUs
  put("cg/kubepods/pod1/cpu.max", "300000 100000\n");        // 3 CPUs
  const auto r = cgroupCpuQuota("0::/kubepods/pod1/petrel\n", v2Mount("/", at("cg")));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->where, at("cg/kubepods/pod1/petrel"));
  EXPECT_EQ(r->wholeCpus(), 2u);
}

TEST_F(CgroupLimits, NoLimitAnywhereIsNone) {
  put("cg/user.slice/cpu.max", "max 100000\n");
  EXPECT_FALSE(cgroupCpuQuota("0::/user.slice\n", v2Mount("/", at("cg"))).has_value());
  // The root cgroup has no cpu.max at all.
  EXPECT_FALSE(cgroupCpuQuota("0::/\n", v2Mount("/", at("cg"))).has_value());
  // No cgroup file system mounted, or no cgroup named.
  EXPECT_FALSE(cgroupCpuQuota("0::/user.slice\n", other_mounts_).has_value());
  EXPECT_FALSE(cgroupCpuQuota("", v2Mount("/", at("cg"))).has_value());
}

TEST_F(CgroupLimits, CgroupV1WithTheCpuControllerInAHierarchyOfItsOwnOrShared) {
  put("cpu/docker/abc/cpu.cfs_quota_us", "200000\n");
  put("cpu/docker/abc/cpu.cfs_period_us", "100000\n");
  put("cpu/docker/cpu.cfs_quota_us", "-1\n");
  put("cpu/docker/cpu.cfs_period_us", "100000\n");
  const std::string cgroup = v1Cgroup_;
  const std::string mounts = v1Mounts();
  const auto q = cgroupCpuQuota(cgroup, mounts);
  ASSERT_TRUE(q.has_value());
  EXPECT_DOUBLE_EQ(q->cpus(), 2.0);
  EXPECT_EQ(q->wholeCpus(), 2u);
  EXPECT_EQ(q->where, at("cpu/docker/abc"));
  // -1: no limit.
  put("cpu/docker/abc/cpu.cfs_quota_us", "-1\n");
  EXPECT_FALSE(cgroupCpuQuota(cgroup, mounts).has_value());
  // "cpuacct" is not the cpu controller: with the two in hierarchies of
  // their own, the quota is read in cpu's.
  put("cpu/docker/abc/cpu.cfs_quota_us", "300000\n");
  put("acct/docker/abc/cpu.cfs_quota_us", "100000\n");
  put("acct/docker/abc/cpu.cfs_period_us", "100000\n");
  const std::string apart = v1Mount("/", at("acct"), "cpuacct") + v1Mount("/", at("cpu"), "cpu");
  const auto r = cgroupCpuQuota("3:cpuacct:/docker/abc\n4:cpu:/docker/abc\n", apart);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->where, at("cpu/docker/abc"));
  EXPECT_EQ(r->wholeCpus(), 3u);
  EXPECT_FALSE(cgroupCpuQuota("3:cpuacct:/docker/abc\n", apart).has_value());
}

TEST_F(CgroupLimits, AContainerSeesItsOwnCgroupAsTheMountsRoot) {
  // Docker without a cgroup namespace: /proc/self/cgroup names the host's
  // path, and the mount shows that directory at the mount point.
  put("cpu/cpu.cfs_quota_us", "150000\n");
  put("cpu/cpu.cfs_period_us", "100000\n");
  const auto q = cgroupCpuQuota("4:cpu,cpuacct:/docker/abc\n", v1Mount("/docker/abc", at("cpu"), "cpu,cpuacct"));
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->where, at("cpu"));
  EXPECT_EQ(q->wholeCpus(), 2u);
  // A path the mount does not show is read at the mount point too.
  const auto r = cgroupCpuQuota("0::/elsewhere\n", v2Mount("/docker/abc", at("cpu")));
  EXPECT_FALSE(r.has_value());  // v2 reads cpu.max, which is not there
  put("cpu/cpu.max", "100000 100000\n");
  const auto s = cgroupCpuQuota("0::/elsewhere\n", v2Mount("/docker/abc", at("cpu")));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->where, at("cpu"));
}

TEST_F(CgroupLimits, ALaterMountAtTheSamePlaceHidesTheEarlierOne) {
  // The hierarchy's root mounted at cg, then the process's cgroup /outer
  // bound over it (as a container runtime does): cg now shows /outer.
  put("cg/cpu.max", "150000 100000\n");
  put("cg/p/cpu.max", "50000 100000\n");
  const std::string mounts = v2Mount("/", at("cg")) + v2Mount("/outer", at("cg"));
  const auto q = cgroupCpuQuota("0::/outer/p\n", mounts);
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->where, at("cg/p"));
  EXPECT_DOUBLE_EQ(q->cpus(), 0.5);
}

TEST_F(CgroupLimits, MountPointsWithEscapedCharacters) {
  put("a dir/cg/p/cpu.max", "300000 100000\n");
  std::string point = at("a dir/cg");
  point.replace(point.find(' '), 1, "\\040");
  const auto q = cgroupCpuQuota("0::/p\n", v2Mount("/", point));
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->wholeCpus(), 3u);
  EXPECT_EQ(q->where, at("a dir/cg/p"));
}

TEST_F(CgroupLimits, GarbageIsNoLimit) {
  for (const char* text : {"", "\n", "max\n", "abc 100000\n", "100000\n", "100000 0\n", "0 100000\n",
                           "-5 100000\n", "100000 100000 7\n", "99999999999999999999999 1\n"}) {
    put("cg/p/cpu.max", text);
    EXPECT_FALSE(cgroupCpuQuota("0::/p\n", v2Mount("/", at("cg"))).has_value()) << text;
  }
  for (const char* text : {"garbage", "1:2", "::::", "0:", "\n\n"})
    EXPECT_FALSE(cgroupCpuQuota(text, v2Mount("/", at("cg"))).has_value()) << text;
  for (const char* text : {"garbage", "1 2 3 4 5 6 - cgroup2", "1 2 3 4 5 6 7 8 9 10 11\n", "-"})
    EXPECT_FALSE(cgroupCpuQuota("0::/p\n", text).has_value()) << text;
}

TEST(AutoLoops, OnePerCpuOfTheMaskNoMoreThanTheQuotaRoundedUp) {
  EXPECT_EQ(autoLoops(16, std::nullopt), 16u);
  EXPECT_EQ(autoLoops(0, std::nullopt), 1u);
  const auto quota = [](int64_t q, int64_t p) { return std::optional<CpuQuota>(CpuQuota{q, p, "x"}); };
  EXPECT_EQ(autoLoops(16, quota(200000, 100000)), 2u);
  EXPECT_EQ(autoLoops(16, quota(150000, 100000)), 2u);
  EXPECT_EQ(autoLoops(16, quota(100001, 100000)), 2u);
  EXPECT_EQ(autoLoops(16, quota(100000, 100000)), 1u);
  EXPECT_EQ(autoLoops(16, quota(10000, 100000)), 1u);
  EXPECT_EQ(autoLoops(2, quota(800000, 100000)), 2u);  // the mask is the smaller
  EXPECT_EQ(autoLoops(64, quota(int64_t(1) << 50, 1000)), 64u);
}

TEST_F(CgroupLimits, MemoryLimitOfCgroupV2AndTheLowestOnTheWayUp) {
  put("cg/kubepods/pod1/petrel/memory.max", "max\n");
  put("cg/kubepods/pod1/memory.max", "536870912\n");  // the pod's 512 MiB
  put("cg/kubepods/memory.max", "8589934592\n");
  const auto m = cgroupMemoryLimit("0::/kubepods/pod1/petrel\n", other_mounts_ + v2Mount("/", at("cg")));
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->bytes, 512u << 20);
  EXPECT_EQ(m->where, at("cg/kubepods/pod1"));
  put("cg/kubepods/pod1/petrel/memory.max", "268435456\n");
  const auto own = cgroupMemoryLimit("0::/kubepods/pod1/petrel\n", v2Mount("/", at("cg")));
  ASSERT_TRUE(own.has_value());
  EXPECT_EQ(own->bytes, 256u << 20);
  EXPECT_EQ(own->where, at("cg/kubepods/pod1/petrel"));
  // No limit anywhere; the root cgroup has no memory.max at all.
  put("cg/user.slice/memory.max", "max\n");
  EXPECT_FALSE(cgroupMemoryLimit("0::/user.slice\n", v2Mount("/", at("cg"))).has_value());
  EXPECT_FALSE(cgroupMemoryLimit("0::/\n", v2Mount("/", at("cg"))).has_value());
  EXPECT_FALSE(cgroupMemoryLimit("0::/user.slice\n", other_mounts_).has_value());
}

TEST_F(CgroupLimits, MemoryLimitOfCgroupV1InTheMemoryControllersHierarchy) {
  // A v1 host: memory has a hierarchy of its own, which the quota's walk
  // through cpu's must not be confused with.
  put("mem/docker/abc/memory.limit_in_bytes", "335544320\n");
  put("mem/docker/memory.limit_in_bytes", "9223372036854771712\n");  // v1's "no limit"
  put("mem/memory.limit_in_bytes", "9223372036854771712\n");
  put("cpu/docker/abc/memory.limit_in_bytes", "1048576\n");  // not the memory controller's
  const std::string cgroup = v1Cgroup_;
  const std::string mounts = v1Mounts();
  const auto m = cgroupMemoryLimit(cgroup, mounts);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->bytes, 320u << 20);
  EXPECT_EQ(m->where, at("mem/docker/abc"));
  put("mem/docker/abc/memory.limit_in_bytes", "9223372036854771712\n");
  EXPECT_FALSE(cgroupMemoryLimit(cgroup, mounts).has_value());
  // The memory controller named but not mounted: nothing to read.
  EXPECT_FALSE(cgroupMemoryLimit(cgroup, other_mounts_ + v2Mount("/", at("unified"))).has_value());
  // A container that sees its own cgroup as the mount's root.
  put("own/memory.limit_in_bytes", "134217728\n");
  const auto c = cgroupMemoryLimit("12:memory:/docker/abc\n", v1Mount("/docker/abc", at("own"), "memory"));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->bytes, 128u << 20);
  EXPECT_EQ(c->where, at("own"));
}

TEST_F(CgroupLimits, MemoryGarbageIsNoLimit) {
  for (const char* text : {"", "\n", "max\n", "abc\n", "0\n", "-1\n", "12 34\n", "99999999999999999999999\n"}) {
    put("cg/p/memory.max", text);
    EXPECT_FALSE(cgroupMemoryLimit("0::/p\n", v2Mount("/", at("cg"))).has_value()) << text;
  }
}

TEST(AutoOutputMemory, AQuarterOfWhatTheProcessMayUseAtMostOneGibibyte) {
  const uint64_t MiB = 1 << 20, GiB = uint64_t(1) << 30;
  const auto limit = [](uint64_t bytes) { return std::optional<MemoryLimit>(MemoryLimit{bytes, "x"}); };
  EXPECT_EQ(autoOutputMemory(64 * GiB, std::nullopt), GiB);       // a large host: 1 GiB, as before
  EXPECT_EQ(autoOutputMemory(2 * GiB, std::nullopt), 512 * MiB);  // a small board
  EXPECT_EQ(autoOutputMemory(64 * GiB, limit(512 * MiB)), 128 * MiB);  // a container
  EXPECT_EQ(autoOutputMemory(1 * GiB, limit(8 * GiB)), 256 * MiB);     // a limit above the RAM
  EXPECT_EQ(autoOutputMemory(64 * GiB, limit(8 * MiB)), 4 * MiB);      // never below 4 MiB
  EXPECT_EQ(autoOutputMemory(0, std::nullopt), GiB);                   // nothing known
  EXPECT_EQ(autoOutputMemory(0, limit(400 * MiB)), 100 * MiB);
}

}  // namespace
}  // namespace petrel
