// The timed inner loops of scripts/bench, kept out of Python so that the numbers measure
// the filesystem and not the interpreter. Each subcommand does one workload, times it
// with CLOCK_MONOTONIC (process start and argument parsing excluded) and prints one JSON
// object on stdout: {"seconds":S, ...counts...}. On an error it prints the failing call
// and errno on stderr and exits 1; it never retries and never judges the result.
//
//   driver walk DIR                    recursive readdir + lstat of every entry below DIR
//   driver readdir DIR [stat]          one directory: readdir (ls -f), with stat: + lstat each
//   driver seqread FILE...             read each file once, 1 MiB read(2)s
//   driver randread FILE COUNT SEED    COUNT pread(2)s of 4 KiB at random aligned offsets
//                                      (POSIX_FADV_RANDOM, as fio does for randread)
//   driver create DIR COUNT SIZE       mkdir DIR, then COUNT x (open O_CREAT|O_EXCL, write
//                                      SIZE bytes, close), 500 files per subdirectory
//   driver openw FILE                  open(O_WRONLY) + close: a copy-up on a union
//   driver append FILE                 open(O_WRONLY|O_APPEND), write one byte, close: the
//                                      copy-up of a lower file on a union
//   driver lstat ROOT LIST exist|missing
//                                      lstat ROOT/PATH for each line of LIST (read before
//                                      the clock starts); each must exist, or each must be
//                                      missing (ENOENT)
//   driver pwalk N DIR                 the walk in N processes: each reads every directory
//                                      and descends into every subdirectory (d_type), and
//                                      lstats the entries whose index in their directory
//                                      is its number modulo N; timed from before the first
//                                      fork to the end of the last child
//
// Built by scripts/bench with g++ -O2; not part of the layerfs build.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

double now() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

[[noreturn]] void die(const char* what, const std::string& path) {
    std::fprintf(stderr, "%s %s: %s\n", what, path.c_str(), std::strerror(errno));
    std::exit(1);
}

struct WalkCount {
    uint64_t entries = 0;
    uint64_t dirs = 0;
};

// Walks the directory open as `fd` (path `path`, for messages); takes ownership of fd.
void walk(int fd, const std::string& path, WalkCount& count) {
    DIR* dir = fdopendir(fd);
    if (dir == nullptr) die("fdopendir", path);
    std::vector<std::string> subdirs;
    errno = 0;
    while (dirent* de = readdir(dir)) {
        const char* name = de->d_name;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
        struct stat st {};
        if (fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            die("lstat", path + "/" + name);
        ++count.entries;
        if (S_ISDIR(st.st_mode)) subdirs.emplace_back(name);
        errno = 0;
    }
    if (errno != 0) die("readdir", path);
    // Descend after the listing, as find(1) does, so that one directory stream is open
    // per level at most.
    for (const auto& name : subdirs) {
        int sub = openat(dirfd(dir), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) die("open", path + "/" + name);
        ++count.dirs;
        walk(sub, path + "/" + name, count);
    }
    closedir(dir);
}

int cmd_walk(const std::string& root) {
    double t0 = now();
    int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) die("open", root);
    WalkCount count;
    walk(fd, root, count);
    double t = now() - t0;
    std::printf("{\"seconds\":%.6f,\"entries\":%" PRIu64 ",\"dirs\":%" PRIu64 "}\n", t,
                count.entries, count.dirs);
    return 0;
}

int cmd_readdir(const std::string& path, bool with_stat) {
    double t0 = now();
    DIR* dir = opendir(path.c_str());
    if (dir == nullptr) die("opendir", path);
    uint64_t n = 0;
    errno = 0;
    while (dirent* de = readdir(dir)) {
        const char* name = de->d_name;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
        if (with_stat) {
            struct stat st {};
            if (fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                die("lstat", path + "/" + name);
        }
        ++n;
        errno = 0;
    }
    if (errno != 0) die("readdir", path);
    closedir(dir);
    double t = now() - t0;
    std::printf("{\"seconds\":%.6f,\"entries\":%" PRIu64 "}\n", t, n);
    return 0;
}

int cmd_seqread(const std::vector<std::string>& files) {
    constexpr size_t kBuf = 1 << 20;
    std::vector<char> buf(kBuf);
    uint64_t total = 0;
    double t0 = now();
    for (const auto& f : files) {
        int fd = open(f.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) die("open", f);
        for (;;) {
            ssize_t n = read(fd, buf.data(), kBuf);
            if (n < 0) die("read", f);
            if (n == 0) break;
            total += static_cast<uint64_t>(n);
        }
        close(fd);
    }
    double t = now() - t0;
    std::printf("{\"seconds\":%.6f,\"bytes\":%" PRIu64 "}\n", t, total);
    return 0;
}

int cmd_randread(const std::string& f, uint64_t count, uint64_t seed) {
    constexpr size_t kBlock = 4096;
    alignas(4096) static char buf[kBlock];
    double t0 = now();
    int fd = open(f.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open", f);
    struct stat st {};
    if (fstat(fd, &st) != 0) die("fstat", f);
    uint64_t blocks = static_cast<uint64_t>(st.st_size) / kBlock;
    if (blocks == 0) {
        errno = EINVAL;
        die("file smaller than 4 KiB:", f);
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<uint64_t> pick(0, blocks - 1);
    for (uint64_t i = 0; i < count; ++i) {
        off_t off = static_cast<off_t>(pick(rng) * kBlock);
        ssize_t n = pread(fd, buf, kBlock, off);
        if (n != static_cast<ssize_t>(kBlock)) {
            if (n >= 0) errno = EIO;
            die("pread", f);
        }
    }
    close(fd);
    double t = now() - t0;
    std::printf("{\"seconds\":%.6f,\"ops\":%" PRIu64 "}\n", t, count);
    return 0;
}

int cmd_create(const std::string& dir, uint64_t count, size_t size) {
    std::vector<char> data(size, 'x');
    double t0 = now();
    if (mkdir(dir.c_str(), 0755) != 0) die("mkdir", dir);
    std::string sub;
    char name[64];
    for (uint64_t i = 0; i < count; ++i) {
        if (i % 500 == 0) {
            std::snprintf(name, sizeof name, "/d%04" PRIu64, i / 500);
            sub = dir + name;
            if (mkdir(sub.c_str(), 0755) != 0) die("mkdir", sub);
        }
        std::snprintf(name, sizeof name, "/f%06" PRIu64, i);
        std::string p = sub + name;
        int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) die("create", p);
        if (size > 0 && write(fd, data.data(), size) != static_cast<ssize_t>(size)) die("write", p);
        if (close(fd) != 0) die("close", p);
    }
    double t = now() - t0;
    std::printf("{\"seconds\":%.6f,\"files\":%" PRIu64 "}\n", t, count);
    return 0;
}

int cmd_openw(const std::string& f) {
    double t0 = now();
    int fd = open(f.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) die("open O_WRONLY", f);
    if (close(fd) != 0) die("close", f);
    double t = now() - t0;
    struct stat st {};
    if (stat(f.c_str(), &st) != 0) die("stat", f);
    std::printf("{\"seconds\":%.6f,\"bytes\":%lld}\n", t, static_cast<long long>(st.st_size));
    return 0;
}

int cmd_append(const std::string& f) {
    double t0 = now();
    int fd = open(f.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) die("open O_WRONLY|O_APPEND", f);
    if (write(fd, "!", 1) != 1) die("write", f);
    if (close(fd) != 0) die("close", f);
    double t = now() - t0;
    struct stat st {};
    if (stat(f.c_str(), &st) != 0) die("stat", f);
    std::printf("{\"seconds\":%.6f,\"bytes\":%lld}\n", t, static_cast<long long>(st.st_size));
    return 0;
}

int cmd_lstat(const std::string& root, const std::string& list, bool exist) {
    std::ifstream in(list);
    if (!in) die("open", list);
    std::vector<std::string> paths;
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) paths.push_back(root + "/" + line);
    }
    double t0 = now();
    for (const auto& p : paths) {
        struct stat st {};
        int rc = lstat(p.c_str(), &st);
        if (exist && rc != 0) die("lstat", p);
        if (!exist && rc == 0) {
            errno = EEXIST;
            die("lstat of a missing path found it:", p);
        }
        if (!exist && errno != ENOENT) die("lstat", p);
    }
    double t = now() - t0;
    std::printf("{\"seconds\":%.6f,\"paths\":%zu}\n", t, paths.size());
    return 0;
}

// One process of pwalk: its share of the lstats of the directory open as fd (owned).
uint64_t pwalk(int fd, const std::string& path, uint64_t share, uint64_t n) {
    DIR* dir = fdopendir(fd);
    if (dir == nullptr) die("fdopendir", path);
    std::vector<std::string> subdirs;
    uint64_t index = 0;
    uint64_t done = 0;
    errno = 0;
    while (dirent* de = readdir(dir)) {
        const char* name = de->d_name;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
        unsigned char type = de->d_type;
        if (index++ % n == share || type == DT_UNKNOWN) {
            struct stat st {};
            if (fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                die("lstat", path + "/" + name);
            ++done;
            if (type == DT_UNKNOWN) type = S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
        }
        if (type == DT_DIR) subdirs.emplace_back(name);
        errno = 0;
    }
    if (errno != 0) die("readdir", path);
    for (const auto& name : subdirs) {
        int sub = openat(dirfd(dir), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) die("open", path + "/" + name);
        done += pwalk(sub, path + "/" + name, share, n);
    }
    closedir(dir);
    return done;
}

int cmd_pwalk(uint64_t n, const std::string& root) {
    if (n == 0) return 2;
    double t0 = now();
    std::vector<pid_t> children;
    for (uint64_t i = 0; i < n; ++i) {
        pid_t pid = fork();
        if (pid < 0) die("fork", root);
        if (pid == 0) {
            int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0) die("open", root);
            pwalk(fd, root, i, n);
            std::fflush(stderr);
            _exit(0);
        }
        children.push_back(pid);
    }
    int failed = 0;
    for (pid_t pid : children) {
        int status = 0;
        if (waitpid(pid, &status, 0) < 0) die("waitpid", root);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
    }
    double t = now() - t0;
    if (failed != 0) {
        std::fprintf(stderr, "pwalk: %d of %" PRIu64 " processes failed\n", failed, n);
        return 1;
    }
    std::printf("{\"seconds\":%.6f,\"processes\":%" PRIu64 "}\n", t, n);
    return 0;
}

uint64_t num(const char* s) {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        std::fprintf(stderr, "not a number: %s\n", s);
        std::exit(2);
    }
    return v;
}

int usage() {
    std::fprintf(stderr,
                 "usage: driver walk DIR | readdir DIR [stat] | seqread FILE... |\n"
                 "       randread FILE COUNT SEED | create DIR COUNT SIZE | openw FILE |\n"
                 "       append FILE | lstat ROOT LIST exist|missing | pwalk N DIR\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) return usage();
    std::string cmd = argv[1];
    if (cmd == "walk" && argc == 3) return cmd_walk(argv[2]);
    if (cmd == "readdir" && (argc == 3 || (argc == 4 && std::string(argv[3]) == "stat")))
        return cmd_readdir(argv[2], argc == 4);
    if (cmd == "seqread") return cmd_seqread(std::vector<std::string>(argv + 2, argv + argc));
    if (cmd == "randread" && argc == 5) return cmd_randread(argv[2], num(argv[3]), num(argv[4]));
    if (cmd == "create" && argc == 5) return cmd_create(argv[2], num(argv[3]), num(argv[4]));
    if (cmd == "openw" && argc == 3) return cmd_openw(argv[2]);
    if (cmd == "append" && argc == 3) return cmd_append(argv[2]);
    if (cmd == "lstat" && argc == 5 &&
        (std::string(argv[4]) == "exist" || std::string(argv[4]) == "missing"))
        return cmd_lstat(argv[2], argv[3], std::string(argv[4]) == "exist");
    if (cmd == "pwalk" && argc == 4) return cmd_pwalk(num(argv[2]), argv[3]);
    return usage();
}
