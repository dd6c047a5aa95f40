// A node's names: the first inline, any more (hard links) in the node's extra part.
#include "layerfs/core/node.hpp"

namespace layerfs::core {
namespace {

bool names(const Alias& alias, const Node* parent, const std::string& name) {
    return alias.parent.get() == parent && alias.name == name;
}

}  // namespace

std::optional<Alias> Node::known_alias() const {
    std::lock_guard lock(mutex_);
    if (!has_alias()) return std::nullopt;
    // A name under a directory the kernel has forgotten may have moved with a rename made
    // through that directory's new node: a name the kernel holds comes first.
    if (alias_.parent && alias_.parent->forgotten() && extra_) {
        for (const Alias& known : extra_->more_aliases) {
            if (!known.parent || !known.parent->forgotten()) return known;
        }
    }
    return alias_;
}

void Node::add_alias(const Alias& alias) {
    std::lock_guard lock(mutex_);
    if (!has_alias()) {
        alias_ = alias;
        set(kHasAlias, true);
        return;
    }
    const auto stale = [&](const Alias& known) {
        return known.parent && known.parent != alias.parent && known.parent->forgotten();
    };
    if (extra_) std::erase_if(extra_->more_aliases, stale);
    if (stale(alias_)) {
        if (!extra_ || extra_->more_aliases.empty()) {
            alias_ = alias;
            return;
        }
        alias_ = std::move(extra_->more_aliases.front());
        extra_->more_aliases.erase(extra_->more_aliases.begin());
    }
    if (names(alias_, alias.parent.get(), alias.name)) return;
    std::vector<Alias>& more = extra().more_aliases;
    for (const Alias& known : more) {
        if (names(known, alias.parent.get(), alias.name)) return;
    }
    more.push_back(alias);
}

void Node::remove_alias(const Node* parent, const std::string& name) {
    std::lock_guard lock(mutex_);
    if (!has_alias()) return;
    std::vector<Alias>* more = extra_ ? &extra_->more_aliases : nullptr;
    const bool last = !more || more->empty();
    if (names(alias_, parent, name)) {
        if (last && is_dir()) return;
        if (last) {
            alias_ = Alias{};
            set(kHasAlias, false);
        } else {
            alias_ = std::move(more->front());
            more->erase(more->begin());
        }
        return;
    }
    if (!more) return;
    for (auto it = more->begin(); it != more->end(); ++it) {
        if (names(*it, parent, name)) {
            more->erase(it);
            return;
        }
    }
}

void Node::rename_alias_locked(const Node* old_parent, const std::string& old_name, Alias to) {
    if (has_alias() && !names(alias_, old_parent, old_name)) {
        // The first name stays known, after TO.
        std::vector<Alias>& more = extra().more_aliases;
        for (auto it = more.begin(); it != more.end(); ++it) {
            if (names(*it, old_parent, old_name)) {
                more.erase(it);
                break;
            }
        }
        more.insert(more.begin(), std::move(alias_));
    }
    alias_ = std::move(to);
    set(kHasAlias, true);
}

}  // namespace layerfs::core
