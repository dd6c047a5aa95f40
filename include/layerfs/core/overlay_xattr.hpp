// The overlay xattr names layerfs reads and hides (DESIGN.md §2).
#pragma once

#include <string_view>

namespace layerfs::core {

inline constexpr std::string_view kTrustedOverlayPrefix = "trusted.overlay.";
inline constexpr std::string_view kUserOverlayPrefix = "user.overlay.";
inline constexpr std::string_view kFuseOverlayfsPrefix = "user.fuseoverlayfs.";

// fuse-overlayfs marks opaque directories with a name of its own.
inline constexpr const char* kOpaqueXattrs[] = {"trusted.overlay.opaque", "user.overlay.opaque",
                                                "user.fuseoverlayfs.opaque"};
inline constexpr const char* kWhiteoutXattrs[] = {"trusted.overlay.whiteout",
                                                  "user.overlay.whiteout"};
// A regular file holding metadata only; its data is in a lower layer (the kernel's metacopy),
// at the path of overlay.redirect when there is one.
inline constexpr std::string_view kMetacopyRecord = "metacopy";
inline constexpr std::string_view kRedirectRecord = "redirect";

// True for names that belong to the union's plumbing and are never shown through the mount.
inline bool is_private_xattr(std::string_view name) {
    return name.starts_with(kTrustedOverlayPrefix) || name.starts_with(kUserOverlayPrefix) ||
           name.starts_with(kFuseOverlayfsPrefix);
}

}  // namespace layerfs::core
