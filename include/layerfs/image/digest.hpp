// sha256 of a byte stream, for the digests an OCI image names its layers by: the diff_id
// (the uncompressed tar) and the blob digest (the bytes as stored).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace layerfs::image {

// Told how many bytes of tar a long apply or diff has handled so far (for a progress line).
using Progress = std::function<void(std::uint64_t bytes)>;

class Sha256 {
  public:
    Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    Sha256(Sha256&&) noexcept;
    Sha256& operator=(Sha256&&) noexcept;
    ~Sha256();

    void update(const void* data, std::size_t size);
    // "sha256:" and the lowercase hex digest of everything given so far. Ends the hash:
    // call it once.
    std::string finish();

  private:
    struct Context;
    std::unique_ptr<Context> ctx_;
};

}  // namespace layerfs::image
