# shellcheck shell=bash
# Shared by scripts/test and scripts/demo: install the build dependencies, build, and time
# each step as a named stage. Source it; don't run it. Callers use `set -euo pipefail` and
# cd to "$LAYERFS_ROOT" first (the build directories are relative to it).
#
# The step functions report errors by their return status and stop at the first failing
# command on their own: `set -e` does not apply inside a function called from lfs_stage.

# shellcheck disable=SC2034  # used by the scripts that source this file
LAYERFS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Everything the build, the tests and the demo need on Debian bookworm.
LAYERFS_PACKAGES=(
    meson ninja-build g++ pkg-config
    libfuse3-dev fuse3 libxxhash-dev libspdlog-dev libcli11-dev
    libgtest-dev libgmock-dev libarchive-dev libssl-dev
    attr acl fuse-overlayfs clang-format
    # tests/containers: podman (with conmon, pulled in) builds and runs images on layerfs,
    # with runc (crun refuses the hybrid cgroup layout of the CI machines) and a rootfs made
    # of busybox-static; buildah shares podman's build code and is what users run too.
    podman buildah runc busybox-static
)

# A note that a stage's command may set; lfs_stage prints it after the duration.
LFS_STAGE_NOTE=

# Microseconds since the epoch, from bash's own clock (no date(1) fork).
lfs_now_us() {
    local t=${EPOCHREALTIME//[!0-9]/}
    echo $((10#$t))
}

# Runs "$@" as a stage called NAME: prints `== stage NAME`, then, when it ends,
# `== stage NAME ... 3.2s` (with LFS_STAGE_NOTE and FAILED when it failed).
# Returns the command's status.
lfs_stage() {
    local name=$1
    shift
    local start rc=0 us
    start=$(lfs_now_us)
    LFS_STAGE_NOTE=
    echo "== stage $name"
    "$@" || rc=$?
    us=$(($(lfs_now_us) - start))
    local line
    line=$(printf '== stage %s ... %d.%01ds' "$name" $((us / 1000000)) $((us % 1000000 / 100000)))
    if [[ -n $LFS_STAGE_NOTE ]]; then line+=" ($LFS_STAGE_NOTE)"; fi
    if ((rc != 0)); then line+=" FAILED (exit $rc)"; fi
    echo "$line"
    return "$rc"
}

# Prints the packages of LAYERFS_PACKAGES that are not installed, one a line.
lfs_missing_packages() {
    local pkg status
    for pkg in "${LAYERFS_PACKAGES[@]}"; do
        # shellcheck disable=SC2016  # ${Status} is dpkg-query's field, not ours
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) || status=
        [[ $status == "install ok installed" ]] || printf '%s\n' "$pkg"
    done
}

# Installs the missing packages with apt-get; touches nothing when all are there.
# Without root and with something missing it says what and fails.
lfs_install_packages() {
    local -a missing
    mapfile -t missing < <(lfs_missing_packages)
    if ((${#missing[@]} == 0)); then
        LFS_STAGE_NOTE="all ${#LAYERFS_PACKAGES[@]} packages already installed"
        return 0
    fi
    if ((EUID != 0)); then
        echo "layerfs: missing packages: ${missing[*]}" >&2
        echo "layerfs: run as root, or install them: sudo apt-get install -y ${missing[*]}" >&2
        return 1
    fi
    echo "installing: ${missing[*]}"
    apt-get update || return
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" || return
    LFS_STAGE_NOTE="installed ${#missing[@]} packages"
}

# lfs_build DIR [MESON_SETUP_OPTION...]: configures DIR (only when it is not configured
# yet; the options apply only then) and compiles it.
lfs_build() {
    local dir=$1
    shift
    if [[ ! -f $dir/meson-private/coredata.dat ]]; then
        meson setup "$dir" "$@" || return
    fi
    meson compile -C "$dir" || return
}
