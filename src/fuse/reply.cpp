#include "layerfs/fuse/reply.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <exception>
#include <new>

namespace layerfs::fuse_ops {

void reply_exception(fuse_req_t req) noexcept {
    int error = EIO;
    try {
        throw;
    } catch (const std::bad_alloc&) {
        error = ENOMEM;
    } catch (const std::exception& e) {
        spdlog::error("internal error: {}", e.what());
    } catch (...) {
        spdlog::error("internal error of unknown type");
    }
    fuse_reply_err(req, error);
}

}  // namespace layerfs::fuse_ops
