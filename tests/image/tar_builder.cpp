#include "tar_builder.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "layerfs/image/digest.hpp"

namespace layerfs::test {
namespace {

void check(struct archive* a, int status, const char* what) {
    if (status < ARCHIVE_WARN) {
        throw std::runtime_error(std::string(what) + ": " +
                                 (archive_error_string(a) ? archive_error_string(a) : "?"));
    }
}

struct Entry {
    archive_entry* e = archive_entry_new();
    ~Entry() { archive_entry_free(e); }
};

}  // namespace

TarBuilder::TarBuilder(const std::string& path, TarCompression compression) {
    archive_ = archive_write_new();
    archive_write_set_format_pax_restricted(archive_);
    if (compression == TarCompression::gzip) archive_write_add_filter_gzip(archive_);
    if (compression == TarCompression::zstd) archive_write_add_filter_zstd(archive_);
    check(archive_, archive_write_open_filename(archive_, path.c_str()), "open tar");
}

TarBuilder::~TarBuilder() {
    close();
}

void TarBuilder::close() {
    if (archive_ == nullptr) return;
    archive_write_close(archive_);
    archive_write_free(archive_);
    archive_ = nullptr;
}

TarBuilder& TarBuilder::file(const std::string& name, const std::string& data, mode_t mode,
                             std::map<std::string, std::string> xattrs) {
    Entry entry;
    archive_entry_set_pathname(entry.e, name.c_str());
    archive_entry_set_filetype(entry.e, AE_IFREG);
    archive_entry_set_perm(entry.e, mode);
    archive_entry_set_size(entry.e, static_cast<la_int64_t>(data.size()));
    archive_entry_set_mtime(entry.e, 1700000000, 0);
    for (const auto& [key, value] : xattrs) {
        archive_entry_xattr_add_entry(entry.e, key.c_str(), value.data(), value.size());
    }
    check(archive_, archive_write_header(archive_, entry.e), "header");
    if (!data.empty()) archive_write_data(archive_, data.data(), data.size());
    return *this;
}

TarBuilder& TarBuilder::dir(const std::string& name, mode_t mode) {
    Entry entry;
    archive_entry_set_pathname(entry.e, name.c_str());
    archive_entry_set_filetype(entry.e, AE_IFDIR);
    archive_entry_set_perm(entry.e, mode);
    archive_entry_set_mtime(entry.e, 1700000000, 0);
    check(archive_, archive_write_header(archive_, entry.e), "header");
    return *this;
}

TarBuilder& TarBuilder::symlink(const std::string& name, const std::string& target) {
    Entry entry;
    archive_entry_set_pathname(entry.e, name.c_str());
    archive_entry_set_filetype(entry.e, AE_IFLNK);
    archive_entry_set_perm(entry.e, 0777);
    archive_entry_set_symlink(entry.e, target.c_str());
    check(archive_, archive_write_header(archive_, entry.e), "header");
    return *this;
}

TarBuilder& TarBuilder::hardlink(const std::string& name, const std::string& target) {
    Entry entry;
    archive_entry_set_pathname(entry.e, name.c_str());
    archive_entry_set_filetype(entry.e, AE_IFREG);
    archive_entry_set_perm(entry.e, 0644);
    archive_entry_set_hardlink(entry.e, target.c_str());
    check(archive_, archive_write_header(archive_, entry.e), "header");
    return *this;
}

TarBuilder& TarBuilder::fifo(const std::string& name) {
    Entry entry;
    archive_entry_set_pathname(entry.e, name.c_str());
    archive_entry_set_filetype(entry.e, AE_IFIFO);
    archive_entry_set_perm(entry.e, 0600);
    check(archive_, archive_write_header(archive_, entry.e), "header");
    return *this;
}

TarBuilder& TarBuilder::char_device(const std::string& name, unsigned major, unsigned minor) {
    Entry entry;
    archive_entry_set_pathname(entry.e, name.c_str());
    archive_entry_set_filetype(entry.e, AE_IFCHR);
    archive_entry_set_perm(entry.e, 0600);
    archive_entry_set_rdevmajor(entry.e, major);
    archive_entry_set_rdevminor(entry.e, minor);
    check(archive_, archive_write_header(archive_, entry.e), "header");
    return *this;
}

namespace {

template <class Visit>
void read_tar(const std::string& path, Visit visit) {
    struct archive* a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    check(a, archive_read_open_filename(a, path.c_str(), 65536), "open tar");
    archive_entry* entry = nullptr;
    while (archive_read_next_header(a, &entry) == ARCHIVE_OK) visit(a, entry);
    archive_read_free(a);
}

std::string read_data(struct archive* a) {
    std::string data;
    char buffer[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buffer, sizeof buffer)) > 0) data.append(buffer, n);
    return data;
}

}  // namespace

std::vector<std::string> list_tar(const std::string& path) {
    std::vector<std::string> lines;
    read_tar(path, [&](struct archive*, archive_entry* e) {
        std::ostringstream line;
        line << archive_entry_pathname(e) << ' ' << std::oct << archive_entry_filetype(e) << ' '
             << archive_entry_perm(e) << std::dec << ' ' << archive_entry_uid(e) << ':'
             << archive_entry_gid(e) << ' ' << archive_entry_size(e);
        if (archive_entry_symlink(e)) line << " -> " << archive_entry_symlink(e);
        if (archive_entry_hardlink(e)) line << " link " << archive_entry_hardlink(e);
        if (archive_entry_filetype(e) == AE_IFCHR) {
            line << " dev " << archive_entry_rdevmajor(e) << ',' << archive_entry_rdevminor(e);
        }
        archive_entry_xattr_reset(e);
        const char* name;
        const void* value;
        size_t size;
        std::set<std::string> xattrs;
        while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
            xattrs.insert(std::string(name) + "=" +
                          std::string(static_cast<const char*>(value), size));
        }
        for (const std::string& x : xattrs) line << ' ' << x;
        lines.push_back(line.str());
    });
    return lines;
}

std::string tar_file_data(const std::string& path, const std::string& name) {
    std::string found;
    read_tar(path, [&](struct archive* a, archive_entry* e) {
        if (name == archive_entry_pathname(e)) found = read_data(a);
    });
    return found;
}

void extract_with_oci_semantics(const std::vector<std::string>& tars, const std::string& dir) {
    namespace fs = std::filesystem;
    for (const std::string& tar : tars) {
        read_tar(tar, [&](struct archive* a, archive_entry* e) {
            std::string name = archive_entry_pathname(e);
            while (name.starts_with("./")) name.erase(0, 2);
            while (!name.empty() && name.back() == '/') name.pop_back();
            if (name.empty()) return;
            const fs::path path = fs::path(dir) / name;
            const std::string base = path.filename().string();
            if (base == ".wh..wh..opq") {
                for (const auto& child : fs::directory_iterator(path.parent_path())) {
                    fs::remove_all(child.path());
                }
                return;
            }
            if (base.starts_with(".wh.")) {
                fs::remove_all(path.parent_path() / base.substr(4));
                return;
            }
            const auto type = archive_entry_filetype(e);
            if (fs::exists(fs::symlink_status(path)) &&
                !(type == AE_IFDIR && fs::is_directory(fs::symlink_status(path)))) {
                fs::remove_all(path);
            }
            const mode_t perm = archive_entry_perm(e);
            if (archive_entry_hardlink(e)) {
                fs::create_hard_link(fs::path(dir) / archive_entry_hardlink(e), path);
            } else if (type == AE_IFDIR) {
                fs::create_directories(path);
                ::chmod(path.c_str(), perm);
            } else if (type == AE_IFREG) {
                std::ofstream(path, std::ios::binary) << read_data(a);
                ::chmod(path.c_str(), perm);
            } else if (type == AE_IFLNK) {
                fs::create_symlink(archive_entry_symlink(e), path);
            } else if (type == AE_IFIFO) {
                ::mkfifo(path.c_str(), perm);
            } else if (type == AE_IFCHR) {
                ::mknod(path.c_str(), S_IFCHR | perm,
                        makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e)));
            }
        });
    }
}

std::string sha256_of_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    image::Sha256 hash;
    char buffer[65536];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
        hash.update(buffer, static_cast<std::size_t>(in.gcount()));
    }
    return hash.finish();
}

}  // namespace layerfs::test
