// Test helpers for image layers: tarballs written entry by entry with libarchive (hostile
// names included), a tar read back as a list of entries, and a reference extraction of a
// layer stack with OCI semantics on a plain directory.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

struct archive;  // libarchive's, kept out of the tests that do not need it

namespace layerfs::test {

enum class TarCompression { none, gzip, zstd };

class TarBuilder {
  public:
    explicit TarBuilder(const std::string& path, TarCompression compression = TarCompression::none);
    TarBuilder(const TarBuilder&) = delete;
    TarBuilder& operator=(const TarBuilder&) = delete;
    ~TarBuilder();

    TarBuilder& file(const std::string& name, const std::string& data, mode_t mode = 0644,
                     std::map<std::string, std::string> xattrs = {});
    TarBuilder& dir(const std::string& name, mode_t mode = 0755);
    TarBuilder& symlink(const std::string& name, const std::string& target);
    TarBuilder& hardlink(const std::string& name, const std::string& target);
    TarBuilder& fifo(const std::string& name);
    TarBuilder& char_device(const std::string& name, unsigned major, unsigned minor);
    // Writes the end of the archive; the destructor does it too.
    void close();

  private:
    ::archive* archive_ = nullptr;
};

// One tar entry as the test compares them: "path type mode uid:gid size target xattrs".
std::vector<std::string> list_tar(const std::string& path);
// The data of entry NAME in the tar at PATH.
std::string tar_file_data(const std::string& path, const std::string& name);

// Extracts the layer tars (bottom first) onto DIR as an image runtime shows the result:
// .wh.NAME removes NAME, .wh..wh..opq empties its directory of what lower layers put there.
void extract_with_oci_semantics(const std::vector<std::string>& tars, const std::string& dir);

std::string sha256_of_file(const std::string& path);

}  // namespace layerfs::test
