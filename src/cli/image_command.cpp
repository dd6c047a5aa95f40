#include "layerfs/cli/image_command.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "layerfs/image/apply.hpp"
#include "layerfs/image/diff.hpp"

namespace layerfs::cli {
namespace {

constexpr const char* kApplyHelp =
    R"(Usage: layerfs apply [--keep-oci-whiteouts] LAYER.tar[.gz|.zst] DIR

Unpacks one OCI image layer (a tar, compressed in any way libarchive reads)
into DIR, which must be absent or empty, as a layer directory layerfs and the
kernel's overlayfs mount: .wh.NAME becomes a whiteout (a 0/0 character
device), .wh..wh..opq makes its directory opaque. Owners that cannot be set are
recorded in user.containers.override_stat. Names that would leave DIR are
refused; on any error DIR is left as it was. Prints the layer's diff_id
(sha256:... of the uncompressed tar) on stdout.

Options:
  --keep-oci-whiteouts  keep .wh. files as plain files
  -h, --help            print this help and exit
)";

constexpr const char* kDiffHelp =
    R"(Usage: layerfs diff UPPER [--lower DIR ...] -o LAYER.tar|- [--gzip|--zstd]
                   [--mtime SECONDS] [--force]

Packs an upper directory as an OCI image layer: whiteouts (in every form layerfs
reads) become .wh.NAME, an opaque directory that some --lower has becomes
.wh..wh..opq, the union's private xattrs are dropped, hard links stay hard
links, a metacopy file gets its data from the --lower layers (following
overlay.redirect). The output is deterministic: sorted entries, numeric owners,
PAX format. Prints the diff_id (and, compressed, the blob digest) on stdout, or on
stderr when the layer goes to stdout. Refuses an upper a running layerfs has
mounted, unless --force.

Options:
  -o, --output FILE     where the layer goes; - for stdout (required)
  --lower DIR           a layer below UPPER, topmost first; may be repeated
  --gzip, --zstd        compress the layer
  --mtime SECONDS       write later mtimes as SECONDS since the epoch
  --force               pack an upper that is in use
  -h, --help            print this help and exit
)";

int fail(const std::string& text) {
    std::fprintf(stderr, "layerfs: %s\n", text.c_str());
    return 1;
}

int usage_error(const char* command, const std::string& text) {
    std::fprintf(stderr, "layerfs: %s: %s (see layerfs %s --help)\n", command, text.c_str(),
                 command);
    return 2;
}

// "layerfs: apply L.tar: 120 MiB" rewritten in place on a terminal, a few times a second,
// for layers big enough to take a while; erased when the command ends.
class ProgressLine {
  public:
    explicit ProgressLine(std::string what) : what_(std::move(what)) {}
    ProgressLine(const ProgressLine&) = delete;
    ProgressLine& operator=(const ProgressLine&) = delete;
    ~ProgressLine() {
        if (shown_) std::fputs("\r\033[K", stderr);
    }
    std::function<void(std::uint64_t)> callback() {
        if (!::isatty(STDERR_FILENO)) return {};
        return [this](std::uint64_t bytes) { update(bytes); };
    }

  private:
    void update(std::uint64_t bytes) {
        const auto now = std::chrono::steady_clock::now();
        if (bytes < (64u << 20) || now - last_ < std::chrono::milliseconds(200)) return;
        last_ = now;
        shown_ = true;
        std::fprintf(stderr, "\rlayerfs: %s: %llu MiB", what_.c_str(),
                     static_cast<unsigned long long>(bytes >> 20));
        std::fflush(stderr);
    }

    std::string what_;
    std::chrono::steady_clock::time_point last_{};
    bool shown_ = false;
};

void print_warnings(const std::vector<std::string>& warnings) {
    for (const std::string& warning : warnings) {
        std::fprintf(stderr, "layerfs: warning: %s\n", warning.c_str());
    }
}

int run_apply(std::vector<std::string> args) {
    CLI::App app{"layerfs apply"};
    app.set_help_flag();
    bool help = false;
    image::ApplyOptions options;
    std::string archive;
    std::string dir;
    app.add_flag("-h,--help", help);
    app.add_flag("--keep-oci-whiteouts", options.keep_oci_whiteouts);
    app.add_option("archive", archive);
    app.add_option("dir", dir);
    try {
        app.parse(args);
    } catch (const CLI::ParseError& e) {
        return usage_error("apply", e.what());
    }
    if (help) {
        std::fputs(kApplyHelp, stdout);
        return 0;
    }
    if (archive.empty() || dir.empty()) return usage_error("apply", "LAYER and DIR are required");
    auto applied = [&] {
        ProgressLine progress("apply " + archive);
        options.progress = progress.callback();
        return image::apply_layer(archive, dir, options);
    }();
    if (!applied) return fail(applied.error().text);
    print_warnings(applied->warnings);
    std::printf("%s\n", applied->diff_id.c_str());
    return 0;
}

int run_diff(std::vector<std::string> args) {
    CLI::App app{"layerfs diff"};
    app.set_help_flag();
    bool help = false;
    bool gzip = false;
    bool zstd = false;
    std::string upper;
    std::string output;
    std::optional<long long> mtime;
    image::DiffOptions options;
    app.add_flag("-h,--help", help);
    app.add_option("upper", upper);
    app.add_option("-o,--output", output);
    app.add_option("--lower", options.lowers);
    app.add_flag("--gzip", gzip);
    app.add_flag("--zstd", zstd);
    app.add_option("--mtime", mtime)->check(CLI::NonNegativeNumber);
    app.add_flag("--force", options.force);
    try {
        app.parse(args);
    } catch (const CLI::ParseError& e) {
        return usage_error("diff", e.what());
    }
    if (help) {
        std::fputs(kDiffHelp, stdout);
        return 0;
    }
    if (upper.empty()) return usage_error("diff", "UPPER is required");
    if (output.empty()) return usage_error("diff", "-o LAYER.tar (or -o -) is required");
    if (gzip && zstd) return usage_error("diff", "--gzip and --zstd exclude each other");
    if (output == "-" && ::isatty(STDOUT_FILENO)) {
        return usage_error("diff", "refusing to write a tar to a terminal");
    }
    options.compression = gzip   ? image::Compression::gzip
                          : zstd ? image::Compression::zstd
                                 : image::Compression::none;
    if (mtime) options.mtime_clamp = static_cast<std::time_t>(*mtime);
    auto packed = [&] {
        ProgressLine progress("diff " + upper);
        options.progress = progress.callback();
        return image::diff_upper(upper, output, options);
    }();
    if (!packed) return fail(packed.error().text);
    print_warnings(packed->warnings);
    // The layer may be on stdout: then the digests must not mix into it.
    FILE* report = output == "-" ? stderr : stdout;
    std::fprintf(report, "%s\n", packed->digests.diff_id.c_str());
    if (packed->digests.digest) std::fprintf(report, "%s\n", packed->digests.digest->c_str());
    return 0;
}

}  // namespace

std::optional<int> run_image_command(int argc, char** argv) {
    if (argc < 2) return std::nullopt;
    const std::string_view command = argv[1];
    if (command != "apply" && command != "diff") return std::nullopt;
    // CLI11 takes the arguments in reverse order when given a vector.
    std::vector<std::string> args;
    for (int i = argc - 1; i >= 2; --i) args.emplace_back(argv[i]);
    return command == "apply" ? run_apply(std::move(args)) : run_diff(std::move(args));
}

}  // namespace layerfs::cli
