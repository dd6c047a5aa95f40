#include "layerfs/fs/rename.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <memory>
#include <mutex>

#include "layerfs/fs/copy_up.hpp"
#include "layerfs/fs/readdir.hpp"
#include "layerfs/fs/upper_edit.hpp"
#include "layerfs/fs/whiteout.hpp"
#include "layerfs/fs/workdir.hpp"
#include "layerfs/sys/syscalls.hpp"

namespace layerfs::fs {
namespace {

// A node found for the duration of one operation; its lookup count goes back at the end.
class HeldEntry {
  public:
    HeldEntry(Union& fs, Entry entry) : fs_(fs), entry_(std::move(entry)) {}
    HeldEntry(const HeldEntry&) = delete;
    HeldEntry& operator=(const HeldEntry&) = delete;
    ~HeldEntry() { fs_.nodes().forget(fs_.nodes().id_of(*entry_.node), 1); }

    const core::NodePtr& node() const { return entry_.node; }
    const struct stat& attr() const { return entry_.attr; }

  private:
    Union& fs_;
    Entry entry_;
};

// Null when the name does not exist. UNSERIALISED: a walk of the daemon's own, which the
// kernel's locks do not order with changes of the name (see lookup_unserialised).
Result<std::unique_ptr<HeldEntry>> find_held(Union& fs, const core::NodePtr& parent,
                                             const std::string& name, bool unserialised = false) {
    auto entry = unserialised ? lookup_unserialised(fs, parent, name) : lookup(fs, parent, name);
    if (!entry) {
        if (entry.error().value == ENOENT) return std::unique_ptr<HeldEntry>();
        return entry.error();
    }
    return std::make_unique<HeldEntry>(fs, std::move(*entry));
}

bool is_pure_upper_dir(const Union& fs, const core::Node& dir) {
    const core::Placement placement = dir.placement();
    return dir.in_upper() && placement.dir_layers.size() == 1 &&
           placement.dir_layers.front() == const_cast<Union&>(fs).stack().upper().index();
}

// Copies NODE and, for a directory, everything visible below it to the upper.
Result<void> copy_up_tree(Union& fs, const core::NodePtr& node) {
    if (auto up = copy_up(fs, node); !up) return up;
    if (!node->is_dir() || is_pure_upper_dir(fs, *node)) return {};
    auto listed = list_merged(fs, *node);
    if (!listed) return listed.error();
    for (const MergedEntry& entry : *listed) {
        auto child = find_held(fs, node, entry.name, true);
        if (!child) return child.error();
        if (!*child) continue;  // gone meanwhile
        if (auto up = copy_up_tree(fs, (*child)->node()); !up) return up;
    }
    return {};
}

// After copy_up_tree, the directory NODE holds everything it shows: it stops merging with
// the lowers (opaque at the top, so nothing of a lower at its new name shows through),
// and the whiteouts left inside, which now hide nothing, go.
Result<void> seal_tree(Union& fs, const core::NodePtr& node, bool top) {
    if (!node->is_dir() || is_pure_upper_dir(fs, *node)) return {};
    const std::size_t upper = fs.stack().upper().index();
    auto dir_fd = fs.stack().dir_fd(*node, upper);
    if (!dir_fd) return dir_fd.error();
    if (top) {
        if (auto opaque = set_opaque(fs, (*dir_fd)->get(), ""); !opaque) return opaque;
    }
    auto listed = list_merged(fs, *node);
    if (!listed) return listed.error();
    core::Placement sealed = node->placement();
    for (std::size_t layer : sealed.dir_layers) {
        if (layer != upper) fs.stack().forget_dir_fd(*node, layer);
    }
    sealed.dir_layers = {upper};
    sealed.xattr_whiteout_layers.clear();
    node->set_placement(sealed, true);
    for (const MergedEntry& entry : *listed) {
        auto child = find_held(fs, node, entry.name, true);
        if (!child) return child.error();
        if (*child) {
            if (auto done = seal_tree(fs, (*child)->node(), false); !done) return done;
        }
    }
    return remove_whiteouts_in(fs, (*dir_fd)->get());
}

// Makes NODE (copied up) ready to live at another name: a directory with lower parts is
// copied whole and sealed; a pure upper directory moving where a lower has the new name
// must hide it.
Result<void> prepare_to_move(Union& fs, const core::NodePtr& node, bool lower_has_new_name) {
    if (!node->is_dir()) return copy_up(fs, node);
    const bool pure_upper = is_pure_upper_dir(fs, *node);
    if (!pure_upper) {
        if (auto up = copy_up_tree(fs, node); !up) return up;
        return seal_tree(fs, node, true);
    }
    if (!lower_has_new_name) return {};
    auto dir_fd = fs.stack().dir_fd(*node, fs.stack().upper().index());
    if (!dir_fd) return dir_fd.error();
    return set_opaque(fs, (*dir_fd)->get(), "");
}

bool is_within(const core::NodePtr& node, const core::NodePtr& ancestor) {
    for (core::NodePtr at = node; at; at = at->alias().parent) {
        if (at == ancestor) return true;
    }
    return false;
}

// An empty (in the merged view) upper directory at NAME may still hold whiteouts, and
// rename(2) refuses to replace a non-empty directory: swap in an empty opaque one.
Result<void> empty_upper_dir(Union& fs, int upper_dir, const std::string& name) {
    auto st = sys::stat_at(upper_dir, name);
    if (!st) return st.error();
    WorkTemp temp(fs.stack());
    if (::mkdirat(temp.work_fd(), temp.name().c_str(), st->st_mode & 07777) != 0) {
        return last_errno();
    }
    if (::fchownat(temp.work_fd(), temp.name().c_str(), st->st_uid, st->st_gid, 0) != 0 &&
        errno != EPERM) {
        return last_errno();
    }
    if (auto opaque = set_opaque(fs, temp.work_fd(), temp.name()); !opaque) return opaque;
    return temp.move_into_place(upper_dir, name, RENAME_EXCHANGE);
}

void lock_both(std::unique_lock<sys::SmallMutex>& first, std::unique_lock<sys::SmallMutex>& second,
               core::Node& a, core::Node& b) {
    if (&a == &b) {
        first = std::unique_lock(a.change_mutex());
        return;
    }
    core::Node& low = &a < &b ? a : b;
    core::Node& high = &a < &b ? b : a;
    first = std::unique_lock(low.change_mutex());
    second = std::unique_lock(high.change_mutex());
}

Result<bool> lower_has(Union& fs, const core::NodePtr& parent, const std::string& name) {
    auto below = find_in_layers(fs, *parent, name, true);
    if (below) return true;
    if (below.error().value == ENOENT || below.error().value == ENOTDIR) return false;
    return below.error();
}

}  // namespace

Result<void> rename(Union& fs, const core::NodePtr& old_parent, const std::string& old_name,
                    const core::NodePtr& new_parent, const std::string& new_name, unsigned flags) {
    if (fs.read_only()) return Errno{EROFS};
    if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE | RENAME_EXCHANGE)) return Errno{EINVAL};
    if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) return Errno{EINVAL};
    if (old_name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
    if (auto valid = check_new_name(fs, new_name); !valid) return valid;
    const bool exchange = flags & RENAME_EXCHANGE;

    auto source = find_held(fs, old_parent, old_name);
    if (!source) return source.error();
    if (!*source) return Errno{ENOENT};
    auto target = find_held(fs, new_parent, new_name);
    if (!target) return target.error();
    const core::NodePtr& node = (*source)->node();
    const core::NodePtr target_node = *target ? (*target)->node() : nullptr;

    if (exchange && !target_node) return Errno{ENOENT};
    if ((flags & RENAME_NOREPLACE) && target_node) return Errno{EEXIST};
    if (target_node == node) return {};  // two names of one file: POSIX does nothing
    if (node->is_dir() && is_within(new_parent, node)) return Errno{EINVAL};
    if (exchange && target_node->is_dir() && is_within(old_parent, target_node)) {
        return Errno{EINVAL};
    }
    if (target_node && !exchange) {
        if (node->is_dir() && !target_node->is_dir()) return Errno{ENOTDIR};
        if (!node->is_dir() && target_node->is_dir()) return Errno{EISDIR};
        if (target_node->is_dir()) {
            auto listed = list_merged(fs, *target_node);
            if (!listed) return listed.error();
            if (!listed->empty()) return Errno{ENOTEMPTY};
        }
    }

    // Everything that moves must be in the upper, with its parents, before anything moves.
    if (auto up = copy_up(fs, old_parent); !up) return up;
    if (auto up = copy_up(fs, new_parent); !up) return up;
    auto lower_has_old = lower_has(fs, old_parent, old_name);
    if (!lower_has_old) return lower_has_old.error();
    auto lower_has_new = lower_has(fs, new_parent, new_name);
    if (!lower_has_new) return lower_has_new.error();
    if (auto ready = prepare_to_move(fs, node, *lower_has_new); !ready) return ready;
    if (exchange) {
        if (auto ready = prepare_to_move(fs, target_node, *lower_has_old); !ready) return ready;
    }

    std::unique_lock<sys::SmallMutex> first_lock;
    std::unique_lock<sys::SmallMutex> second_lock;
    lock_both(first_lock, second_lock, *old_parent, *new_parent);
    const std::size_t upper = fs.stack().upper().index();
    auto old_dir = fs.stack().dir_fd(*old_parent, upper);
    if (!old_dir) return old_dir.error();
    auto new_dir = fs.stack().dir_fd(*new_parent, upper);
    if (!new_dir) return new_dir.error();
    const int old_fd = (*old_dir)->get();
    const int new_fd = (*new_dir)->get();

    // A directory's new name on disk and in its node change together for dir_fd's walks.
    std::unique_lock<std::shared_mutex> names_moving;
    if (node->is_dir() || (target_node && target_node->is_dir())) {
        names_moving = fs.stack().hold_names_for_move();
    }
    // The nodes' names are locked across the move, so that an open or stat by the old name
    // during it can tell a moved object from a removed one (Stack::by_name).
    int move_error = 0;
    auto move = [&](unsigned flags) {
        const bool moved =
            ::renameat2(old_fd, old_name.c_str(), new_fd, new_name.c_str(), flags) == 0;
        if (!moved) move_error = errno;
        return moved;
    };
    if (exchange) {
        if (!core::Node::exchange_aliases(*node, old_parent, old_name, *target_node, new_parent,
                                          new_name, [&] { return move(RENAME_EXCHANGE); })) {
            return Errno{move_error};
        }
        return {};
    }

    auto slot = upper_slot(fs, new_fd, new_name);
    if (!slot) return slot.error();
    if (*slot == UpperSlot::object && target_node && target_node->is_dir()) {
        if (auto emptied = empty_upper_dir(fs, new_fd, new_name); !emptied) return emptied;
    }
    const bool device_whiteouts = fs.stack().write_setup().whiteouts == core::WhiteoutStyle::device;
    const bool target_is_whiteout = *slot == UpperSlot::whiteout;
    unsigned move_flags = 0;
    if (device_whiteouts && target_is_whiteout && node->is_dir()) {
        // A directory cannot replace the whiteout device: swap with it instead; the
        // whiteout then lies at the old name, which is right when a lower still has it.
        move_flags = RENAME_EXCHANGE;
    } else if (device_whiteouts && *lower_has_old) {
        move_flags = RENAME_WHITEOUT;
    }
    if (!node->move_alias(old_parent.get(), old_name, core::Alias{new_parent, new_name},
                          [&] { return move(move_flags); })) {
        return Errno{move_error};
    }
    if (move_flags == RENAME_EXCHANGE && !*lower_has_old) {
        ::unlinkat(old_fd, old_name.c_str(), 0);
    }
    if (!device_whiteouts) {
        if (target_is_whiteout) {
            if (auto marker = whiteout_marker_for(new_name)) {
                ::unlinkat(new_fd, marker->c_str(), 0);
            }
        }
        if (*lower_has_old) {
            if (auto made = make_whiteout(fs, old_fd, old_name); !made) return made;
        }
    }
    if (target_node) {
        target_node->remove_alias(new_parent.get(), new_name);
        // The replaced object lost its last name (unless it has other links).
        if (target_node->is_dir() || (*target)->attr().st_nlink <= 1) {
            target_node->mark_unlinked();
        }
    }
    return {};
}

Result<Entry> link(Union& fs, const core::NodePtr& node, const core::NodePtr& new_parent,
                   const std::string& new_name) {
    if (auto valid = check_new_name(fs, new_name); !valid) return valid.error();
    if (node->is_dir()) return Errno{EPERM};
    if (auto existing = find_in_layers(fs, *new_parent, new_name); existing) {
        return Errno{EEXIST};
    } else if (existing.error().value != ENOENT) {
        return existing.error();
    }
    if (auto up = copy_up(fs, node); !up) return up.error();
    if (auto up = copy_up(fs, new_parent); !up) return up.error();

    std::lock_guard lock(new_parent->change_mutex());
    auto where = fs.stack().locate(*node);
    if (!where) return where.error();
    auto new_dir = fs.stack().dir_fd(*new_parent, fs.stack().upper().index());
    if (!new_dir) return new_dir.error();
    const int new_fd = (*new_dir)->get();
    auto slot = upper_slot(fs, new_fd, new_name);
    if (!slot) return slot.error();
    if (*slot == UpperSlot::object) return Errno{EEXIST};
    if (*slot == UpperSlot::whiteout) {
        // Link in work, then replace the whiteout in one rename.
        WorkTemp temp(fs.stack());
        if (::linkat(where->dir->get(), where->name.c_str(), temp.work_fd(), temp.name().c_str(),
                     0) != 0) {
            return last_errno();
        }
        const bool device = fs.stack().write_setup().whiteouts == core::WhiteoutStyle::device;
        if (auto moved = temp.move_into_place(new_fd, new_name, device ? 0 : RENAME_NOREPLACE);
            !moved) {
            return moved.error();
        }
        if (!device) {
            if (auto marker = whiteout_marker_for(new_name)) ::unlinkat(new_fd, marker->c_str(), 0);
        }
    } else if (::linkat(where->dir->get(), where->name.c_str(), new_fd, new_name.c_str(), 0) != 0) {
        return last_errno();
    }
    return lookup(fs, new_parent, new_name);
}

}  // namespace layerfs::fs
