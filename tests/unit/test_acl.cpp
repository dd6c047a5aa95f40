// inherit_default_acl against the kernel: a directory gets a default ACL with setfacl, an
// object is created in it for real, and what the kernel gave the object must be exactly
// what inherit_default_acl computes from the parent's default ACL and the requested mode.
#include "layerfs/sys/acl.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "layerfs/sys/unique_fd.hpp"

namespace layerfs::sys {
namespace {

namespace stdfs = std::filesystem;

// Tags and the version of the xattr form, as <linux/posix_acl*.h> spell them.
constexpr uint16_t kUserObj = 0x01;
constexpr uint16_t kUser = 0x02;
constexpr uint16_t kGroupObj = 0x04;
constexpr uint16_t kGroup = 0x08;
constexpr uint16_t kMask = 0x10;
constexpr uint16_t kOther = 0x20;
constexpr uint32_t kVersion = 2;
constexpr uint32_t kUndefinedId = 0xFFFFFFFFu;

struct Entry {
    uint16_t tag;
    uint16_t perm;
    uint32_t id = kUndefinedId;
};

void append_le(std::string& out, uint32_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

std::string acl_bytes(const std::vector<Entry>& entries, uint32_t version = kVersion) {
    std::string out;
    append_le(out, version, 4);
    for (const Entry& entry : entries) {
        append_le(out, entry.tag, 2);
        append_le(out, entry.perm, 2);
        append_le(out, entry.id, 4);
    }
    return out;
}

std::string hex(const std::string& bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char byte : bytes) {
        out.push_back(kDigits[byte >> 4]);
        out.push_back(kDigits[byte & 0xF]);
    }
    return out;
}

std::optional<std::string> read_xattr(const stdfs::path& path, const char* name) {
    for (;;) {
        ssize_t size = ::getxattr(path.c_str(), name, nullptr, 0);
        if (size < 0) return std::nullopt;
        std::string value(static_cast<size_t>(size), '\0');
        ssize_t got = ::getxattr(path.c_str(), name, value.data(), value.size());
        if (got < 0) {
            if (errno == ERANGE) continue;
            return std::nullopt;
        }
        value.resize(static_cast<size_t>(got));
        return value;
    }
}

// ---- The rule on hand-made values -------------------------------------------------------

TEST(InheritDefaultAclTest, BaseOnlyAclBecomesModeBitsAlone) {
    const std::string acl = acl_bytes({{kUserObj, 7}, {kGroupObj, 5}, {kOther, 4}});
    Result<InheritedAcl> inherited = inherit_default_acl(acl, 0666, false);
    ASSERT_TRUE(inherited);
    EXPECT_EQ(inherited->mode, mode_t{0644});
    EXPECT_EQ(inherited->access_acl, "");
    EXPECT_FALSE(inherited->default_acl.has_value());
}

TEST(InheritDefaultAclTest, MaskLimitsGroupClassAndLeavesOwningGroupEntry) {
    const std::string acl =
        acl_bytes({{kUserObj, 7}, {kUser, 7, 1234}, {kGroupObj, 7}, {kMask, 7}, {kOther, 5}});
    Result<InheritedAcl> inherited = inherit_default_acl(acl, 0640, false);
    ASSERT_TRUE(inherited);
    EXPECT_EQ(inherited->mode, mode_t{0640});
    EXPECT_EQ(
        hex(inherited->access_acl),
        hex(acl_bytes({{kUserObj, 6}, {kUser, 7, 1234}, {kGroupObj, 7}, {kMask, 4}, {kOther, 0}})));
}

TEST(InheritDefaultAclTest, MaskWithoutNamedEntriesStillNeedsAnAccessAcl) {
    const std::string acl = acl_bytes({{kUserObj, 7}, {kGroupObj, 5}, {kMask, 7}, {kOther, 0}});
    Result<InheritedAcl> inherited = inherit_default_acl(acl, 0777, false);
    ASSERT_TRUE(inherited);
    EXPECT_EQ(inherited->mode, mode_t{0770});
    EXPECT_NE(inherited->access_acl, "");
}

TEST(InheritDefaultAclTest, KeepsTypeAndSpecialBits) {
    const std::string acl = acl_bytes({{kUserObj, 5}, {kGroupObj, 5}, {kOther, 0}});
    const mode_t requested = S_IFDIR | S_ISUID | S_ISGID | S_ISVTX | 0777;
    Result<InheritedAcl> inherited = inherit_default_acl(acl, requested, true);
    ASSERT_TRUE(inherited);
    EXPECT_EQ(inherited->mode, mode_t{S_IFDIR | S_ISUID | S_ISGID | S_ISVTX | 0550});
}

TEST(InheritDefaultAclTest, DirectoryAlsoGetsTheDefaultAclAsGiven) {
    const std::string acl =
        acl_bytes({{kUserObj, 7}, {kGroupObj, 5}, {kGroup, 7, 99}, {kMask, 7}, {kOther, 5}});
    Result<InheritedAcl> inherited = inherit_default_acl(acl, 0755, true);
    ASSERT_TRUE(inherited);
    ASSERT_TRUE(inherited->default_acl.has_value());
    EXPECT_EQ(*inherited->default_acl, acl);
}

TEST(InheritDefaultAclTest, BaseEntriesGetTheUndefinedIdLikeTheKernelWrites) {
    const std::string acl = acl_bytes(
        {{kUserObj, 7, 0}, {kUser, 7, 5}, {kGroupObj, 7, 0}, {kMask, 7, 0}, {kOther, 7, 0}});
    Result<InheritedAcl> inherited = inherit_default_acl(acl, 0777, false);
    ASSERT_TRUE(inherited);
    EXPECT_EQ(
        hex(inherited->access_acl),
        hex(acl_bytes({{kUserObj, 7}, {kUser, 7, 5}, {kGroupObj, 7}, {kMask, 7}, {kOther, 7}})));
}

// ---- Malformed values -------------------------------------------------------------------

const std::vector<Entry> kBase = {{kUserObj, 7}, {kGroupObj, 5}, {kOther, 5}};

void expect_einval(const std::string& acl) {
    Result<InheritedAcl> inherited = inherit_default_acl(acl, 0644, false);
    ASSERT_FALSE(inherited) << hex(acl);
    EXPECT_EQ(inherited.error(), Errno{EINVAL}) << hex(acl);
}

TEST(InheritDefaultAclTest, RejectsWrongSizes) {
    expect_einval("");
    expect_einval(std::string("\x02\x00\x00", 3));
    expect_einval(acl_bytes(kBase) + "x");
    expect_einval(acl_bytes(kBase) + std::string(7, '\0'));
}

TEST(InheritDefaultAclTest, RejectsWrongVersion) {
    expect_einval(acl_bytes(kBase, 1));
    expect_einval(acl_bytes(kBase, 3));
    expect_einval(acl_bytes(kBase, 0x02000000));  // big-endian 2
}

TEST(InheritDefaultAclTest, RejectsUnknownTags) {
    expect_einval(acl_bytes({{kUserObj, 7}, {kGroupObj, 5}, {kOther, 5}, {0x40, 7}}));
    expect_einval(acl_bytes({{kUserObj, 7}, {0x03, 7}, {kGroupObj, 5}, {kOther, 5}}));
    expect_einval(acl_bytes({{kUserObj, 7}, {0x00, 7}, {kGroupObj, 5}, {kOther, 5}}));
}

TEST(InheritDefaultAclTest, RejectsMissingBaseEntries) {
    expect_einval(acl_bytes({}));
    expect_einval(acl_bytes({{kGroupObj, 5}, {kOther, 5}}));
    expect_einval(acl_bytes({{kUserObj, 7}, {kOther, 5}}));
    expect_einval(acl_bytes({{kUserObj, 7}, {kGroupObj, 5}}));
    expect_einval(acl_bytes({{kUserObj, 7}, {kUser, 7, 1}, {kMask, 7}, {kOther, 5}}));
}

TEST(InheritDefaultAclTest, RejectsRepeatedBaseEntriesAndMasks) {
    expect_einval(acl_bytes({{kUserObj, 7}, {kUserObj, 7}, {kGroupObj, 5}, {kOther, 5}}));
    expect_einval(acl_bytes({{kUserObj, 7}, {kGroupObj, 5}, {kGroupObj, 5}, {kOther, 5}}));
    expect_einval(acl_bytes({{kUserObj, 7}, {kGroupObj, 5}, {kOther, 5}, {kOther, 5}}));
    expect_einval(acl_bytes({{kUserObj, 7}, {kGroupObj, 5}, {kMask, 7}, {kMask, 7}, {kOther, 5}}));
}

TEST(InheritDefaultAclTest, RejectsPermissionBitsBeyondRwx) {
    expect_einval(acl_bytes({{kUserObj, 0x8 | 7}, {kGroupObj, 5}, {kOther, 5}}));
    expect_einval(acl_bytes({{kUserObj, 7}, {kGroupObj, 5}, {kOther, 0x100}}));
}

// ---- Against the kernel -----------------------------------------------------------------

struct AclShape {
    const char* name;
    const char* spec;  // setfacl --set form of the parent's default ACL
    bool keep_mask;    // setfacl -n: keep the spec's mask rather than recompute it
};

struct NewObject {
    const char* name;
    bool is_directory;
    mode_t mode;  // as passed to open/mkdir
};

// Names in failure messages rather than gtest's byte dumps.
void PrintTo(const AclShape& shape, std::ostream* out) {
    *out << shape.name;
}
void PrintTo(const NewObject& object, std::ostream* out) {
    *out << object.name;
}

const AclShape kShapes[] = {
    {"named_user", "u::rwx,u:1234:rwx,g::r-x,o::---", false},
    {"named_user_and_group", "u::rw-,u:1234:r--,g::---,g:4321:rwx,o::r-x", false},
    {"narrow_mask", "u::rwx,g::rwx,g:4321:r-x,m::r--,o::r-x", true},
    {"base_with_mask", "u::rwx,g::r-x,m::rwx,o::---", true},
    {"base_only", "u::rwx,g::r-x,o::r--", false},
    {"base_only_closed", "u::r-x,g::---,o::---", false},
    {"base_only_open", "u::rwx,g::rwx,o::rwx", false},
};

const NewObject kObjects[] = {
    {"file_0666", false, 0666}, {"file_0644", false, 0644},   {"file_0600", false, 0600},
    {"file_0755", false, 0755}, {"file_04755", false, 04755}, {"dir_0777", true, 0777},
    {"dir_0755", true, 0755},   {"dir_0700", true, 0700},     {"dir_01777", true, 01777},
    {"dir_02775", true, 02775},
};

class KernelAgreementTest : public ::testing::TestWithParam<std::tuple<AclShape, NewObject>> {
  protected:
    void SetUp() override {
        char pattern[] = "/tmp/layerfs-acl-XXXXXX";
        const char* made = ::mkdtemp(pattern);
        ASSERT_NE(made, nullptr) << std::strerror(errno);
        dir_ = made;
        // With a default ACL the kernel ignores the umask anyway; 0 keeps the test about
        // the ACL alone should the ACL not take.
        saved_umask_ = ::umask(0);
    }
    void TearDown() override {
        ::umask(saved_umask_);
        std::error_code ignored;
        stdfs::remove_all(dir_, ignored);
    }

    stdfs::path dir_;
    mode_t saved_umask_ = 0;
};

TEST_P(KernelAgreementTest, InheritedAclMatchesWhatTheKernelDoes) {
    const auto& [shape, object] = GetParam();
    const stdfs::path parent = dir_ / "parent";
    ASSERT_EQ(::mkdir(parent.c_str(), 0755), 0);
    // mkdir drops a requested S_ISGID; a directory has it only from a setgid parent.
    const bool parent_setgid = object.is_directory && (object.mode & S_ISGID) != 0;
    if (parent_setgid) {
        ASSERT_EQ(::chmod(parent.c_str(), 02755), 0);
    }

    const std::string command = std::string("setfacl ") + (shape.keep_mask ? "-n " : "") +
                                "-d --set '" + shape.spec + "' '" + parent.string() + "'";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    const std::optional<std::string> parent_default = read_xattr(parent, kAclDefaultXattr);
    ASSERT_TRUE(parent_default.has_value()) << "no default ACL on " << parent;

    const stdfs::path child = parent / "child";
    mode_t requested = object.mode;
    if (object.is_directory) {
        ASSERT_EQ(::mkdir(child.c_str(), object.mode), 0) << std::strerror(errno);
        requested |= S_IFDIR;
    } else {
        UniqueFd fd(::open(child.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, object.mode));
        ASSERT_TRUE(fd.valid()) << std::strerror(errno);
        requested |= S_IFREG;
    }
    struct stat st {};
    ASSERT_EQ(::stat(child.c_str(), &st), 0);

    Result<InheritedAcl> inherited =
        inherit_default_acl(*parent_default, requested, object.is_directory);
    ASSERT_TRUE(inherited) << std::strerror(inherited.error().value);
    EXPECT_EQ(inherited->mode, st.st_mode) << std::oct << inherited->mode << " vs " << st.st_mode;
    EXPECT_EQ(hex(inherited->access_acl), hex(read_xattr(child, kAclAccessXattr).value_or("")));
    const std::optional<std::string> child_default = read_xattr(child, kAclDefaultXattr);
    ASSERT_EQ(inherited->default_acl.has_value(), child_default.has_value());
    if (child_default) {
        EXPECT_EQ(hex(*inherited->default_acl), hex(*child_default));
    }
}

INSTANTIATE_TEST_SUITE_P(ShapesAndModes, KernelAgreementTest,
                         ::testing::Combine(::testing::ValuesIn(kShapes),
                                            ::testing::ValuesIn(kObjects)),
                         [](const ::testing::TestParamInfo<KernelAgreementTest::ParamType>& info) {
                             return std::string(std::get<0>(info.param).name) + "_" +
                                    std::get<1>(info.param).name;
                         });

}  // namespace
}  // namespace layerfs::sys
