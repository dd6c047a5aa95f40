// A fresh directory under /tmp for one test, removed with everything below it.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <system_error>

namespace layerfs::unittest {

class TempRoot {
  public:
    // /tmp/layerfs-NAME-XXXXXX
    explicit TempRoot(const std::string& name) {
        std::string pattern = "/tmp/layerfs-" + name + "-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp " + pattern);
        path_ = pattern;
    }
    TempRoot(const TempRoot&) = delete;
    TempRoot& operator=(const TempRoot&) = delete;
    ~TempRoot() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }

    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& relative) const { return path_ / relative; }

    // Each of DIRS (relative), with its parents.
    void make_dirs(std::initializer_list<std::string> dirs) const {
        for (const std::string& dir : dirs) std::filesystem::create_directories(path_ / dir);
    }

  private:
    std::filesystem::path path_;
};

}  // namespace layerfs::unittest
