#!/usr/bin/env python3
"""Generates the synthetic, image-like lower stack that scripts/bench mounts.

    gen_layers.py OUTDIR   (sizes from the environment, see SIZES below)

Writes OUTDIR/layers/l1 (bottom) .. OUTDIR/layers/lN (top), OUTDIR/plain (the merged
view materialised: what a union of the layers must show, as a plain directory),
OUTDIR/depth/N/0 .. N-1 (the lookup-depth stacks, with OUTDIR/depth/plain), OUTDIR/untar.tar
and OUTDIR/manifest.json.
The tree is deterministic for given sizes (a fixed seed): a Debian-like image made of
"packages" (usr/bin, usr/lib, usr/share/{doc,man,locale}, usr/include, python packages,
var/lib/dpkg/info, etc), most of them in the bottom layer; each upper layer adds packages
into the same directories (merged directories), rewrites files of the layers below,
deletes files and whole directories (whiteouts) and replaces directories (opaque dirs).
Besides the image: a directory of BENCH_BIGDIR entries merged from 4 layers; a big file
of BENCH_BIG_MIB of real (not sparse) data in the bottom layer, for the reads and the
copy-up; a sparse file of the same size (1 MiB of data every 32 MiB, holes between) to
check that a copy-up keeps holes; a tree of BENCH_META_FILES files in the bottom layer
for chown -R / chmod -R. Apart from the image: stacks of 1, 10, 50, 100, 500 layers
(BENCH_DEPTHS) holding one tree of BENCH_DEPTH_FILES files spread over all their layers
(every directory in every layer), with the lists of existing and missing paths to look
up; a tarball of BENCH_UNTAR_FILES small files.

Whiteouts and opaque directories are written in the kernel's format (a 0/0 character
device, trusted.overlay.opaque=y) when run as root, which all three targets read; without
root in the OCI format (.wh.NAME, .wh..wh..opq), which the kernel's overlayfs does not.

The manifest holds the layer paths and the expected merged view: the number of entries a
walk of the mount must find, overall and in the subtrees the benchmarks use.
"""

import io
import json
import os
import random
import stat
import sys
import tarfile

SIZES = {
    # name: (default, meaning)
    "BENCH_LAYERS": (10, "number of lower layers of the image"),
    "BENCH_FILES": (30000, "files and symlinks in the image, over all layers"),
    "BENCH_BIGDIR": (20000, "entries of the big directory, merged from 4 layers"),
    "BENCH_BIG_MIB": (2048, "the big file (real data), and the sparse file's size"),
    "BENCH_META_FILES": (10000, "files of the lower tree for chown -R / chmod -R"),
    "BENCH_UNTAR_FILES": (20000, "files in the tarball that is untarred"),
    "BENCH_DEPTH_FILES": (2000, "files of the lookup-depth tree"),
}
DEPTHS_DEFAULT = "1,10,50,100,500"  # BENCH_DEPTHS: layer counts of the lookup-depth stacks
DEPTH_DIRS = 20  # directories of the lookup-depth tree, present in every layer
SPARSE_STRIDE_MIB = 32  # the sparse file: 1 MiB of data at the start of every 32 MiB

LANGS = """af ar ast be bg bn bs ca cs cy da de el en_GB eo es et eu fa fi fr ga gl he hi hr hu
id is it ja ka kk km ko lt lv mk ml ms nb nl nn oc pa pl pt pt_BR ro ru sk sl sq sr sv ta te
th tr uk vi zh_CN zh_TW""".split()

SYLLABLES = """lib gnu x ssl core util net sys py perl gtk glib db sql http xml json yaml z bz lz
ma crypt gpg dbus udev pam sel audit cap attr acl ncurses read line term info tz data dev
tools base common fonts mime share bin file find grep sed awk diff patch make cmake pkg conf
""".split()


def env_int(name):
    default, _ = SIZES[name]
    value = os.environ.get(name, "")
    return int(value) if value else default


class Gen:
    def __init__(self, out, root):
        self.out = out
        self.root = root
        self.rng = random.Random(20240501)
        self.merged = {}  # relative path -> 'd' | 'f' | 'l' (the union as it must appear)
        self.layer_dirs = []
        self.chunk = self.rng.randbytes(1 << 20)
        self.used_names = set()
        self.whiteouts = 0
        self.opaques = 0
        self.rewrites = 0
        self.wh = set()  # (layer, relative path) of the whiteouts written

    # --- layer primitives -------------------------------------------------------------

    def _ensure_parents(self, layer, rel):
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if (layer, d) in self.wh:
                # A directory made where this layer deleted one: the whiteout becomes an
                # opaque directory, as the kernel's overlayfs does it.
                self.wh.discard((layer, d))
                path = os.path.join(self.layer_dirs[layer], d)
                if self.root:
                    os.unlink(path)
                    os.mkdir(path)
                else:
                    head, name = os.path.split(path)
                    os.unlink(os.path.join(head, ".wh." + name))
                    os.mkdir(path)
                self.whiteouts -= 1
                self.opaque_dir(layer, d)
            if self.merged.get(d) != "d":
                self.merged[d] = "d"
        os.makedirs(os.path.join(self.layer_dirs[layer], *parts), exist_ok=True)

    def _data(self, size):
        if size <= len(self.chunk):
            off = self.rng.randrange(0, len(self.chunk) - size + 1)
            return self.chunk[off : off + size]
        return None

    def _replace_whiteout(self, layer, rel):
        """A file made where this layer has a whiteout replaces the whiteout."""
        if (layer, rel) in self.wh:
            self.wh.discard((layer, rel))
            head, name = os.path.split(os.path.join(self.layer_dirs[layer], rel))
            os.unlink(os.path.join(head, name if self.root else ".wh." + name))
            self.whiteouts -= 1

    def add_file(self, layer, rel, size, mode=0o644):
        self._ensure_parents(layer, rel)
        self._replace_whiteout(layer, rel)
        path = os.path.join(self.layer_dirs[layer], rel)
        with open(path, "wb") as f:
            data = self._data(size)
            if data is not None:
                f.write(data)
            else:  # large: repeat the chunk, each MiB stamped so that no two are equal
                left = size
                n = 0
                while left > 0:
                    piece = self.chunk[: min(left, len(self.chunk))]
                    stamp = b"%016d" % n
                    f.write(stamp + piece[len(stamp) :] if len(piece) > len(stamp) else piece)
                    left -= len(piece)
                    n += 1
        if mode != 0o644:
            os.chmod(path, mode)
        self.merged[rel] = "f"

    def add_symlink(self, layer, rel, target):
        self._ensure_parents(layer, rel)
        self._replace_whiteout(layer, rel)
        os.symlink(target, os.path.join(self.layer_dirs[layer], rel))
        self.merged[rel] = "l"

    def _drop_below(self, rel):
        prefix = rel + "/"
        for p in [p for p in self.merged if p.startswith(prefix)]:
            del self.merged[p]

    def whiteout(self, layer, rel):
        path = os.path.join(self.layer_dirs[layer], rel)
        if os.path.isdir(path):
            return  # this layer already has the directory (e.g. a whiteout inside it)
        self._ensure_parents(layer, rel)
        self.wh.add((layer, rel))
        if self.root:
            os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        else:
            d, name = os.path.split(path)
            open(os.path.join(d, ".wh." + name), "wb").close()
        self.merged.pop(rel, None)
        self._drop_below(rel)
        self.whiteouts += 1

    def opaque_dir(self, layer, rel):
        self._ensure_parents(layer, rel + "/x")
        path = os.path.join(self.layer_dirs[layer], rel)
        if self.root:
            os.setxattr(path, "trusted.overlay.opaque", b"y")
        else:
            open(os.path.join(path, ".wh..wh..opq"), "wb").close()
        self.merged[rel] = "d"
        self._drop_below(rel)
        self.opaques += 1

    # --- the image ------------------------------------------------------------------------

    def small_size(self):
        # Log-normal around 1.5 KiB, capped: most files of an image are small.
        return min(int(self.rng.lognormvariate(7.3, 1.4)), 512 << 10)

    def pkg_name(self):
        while True:
            n = "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(1, 3)))
            n += str(self.rng.randint(0, 9)) if self.rng.random() < 0.3 else ""
            if n not in self.used_names:
                self.used_names.add(n)
                return n

    def package(self, layer, name, budget):
        """Adds one package's files to a layer; returns how many files it wrote."""
        r = self.rng
        n = 0
        for _ in range(r.choice([0, 1, 1, 1, 2])):
            self.add_file(layer, f"usr/bin/{name}{'' if n == 0 else '-' + str(n)}",
                          min(self.small_size() * 8, 1 << 20), 0o755)
            n += 1
        if r.random() < 0.5:
            so = f"usr/lib/x86_64-linux-gnu/lib{name}.so.{r.randint(0, 9)}.{r.randint(0, 20)}.0"
            self.add_file(layer, so, min(self.small_size() * 16, 2 << 20))
            self.add_symlink(layer, f"usr/lib/x86_64-linux-gnu/lib{name}.so.{r.randint(0, 9)}",
                             os.path.basename(so))
            n += 2
        doc = f"usr/share/doc/{name}"
        self.add_file(layer, f"{doc}/copyright", self.small_size())
        self.add_file(layer, f"{doc}/changelog.Debian.gz", self.small_size())
        n += 2
        if r.random() < 0.3:
            self.add_file(layer, f"{doc}/README.md", self.small_size())
            n += 1
        if r.random() < 0.7:
            self.add_file(layer, f"usr/share/man/man{r.choice('1158')}/{name}.{r.choice('1158')}.gz",
                          self.small_size())
            n += 1
        if r.random() < 0.35:
            for lang in r.sample(LANGS, r.randint(3, 25)):
                self.add_file(layer, f"usr/share/locale/{lang}/LC_MESSAGES/{name}.mo", self.small_size())
                n += 1
        if r.random() < 0.25:
            for i in range(r.randint(2, 20)):
                sub = f"{name}/" + ("detail/" if i % 4 == 3 else "")
                self.add_file(layer, f"usr/include/{sub}h{i}.h", self.small_size())
                n += 1
        if r.random() < 0.2 and budget > 40:
            base = f"usr/lib/python3/dist-packages/{name}"
            for i in range(r.randint(5, 40)):
                sub = r.choice(["", "", "core/", "util/", "tests/"])
                self.add_file(layer, f"{base}/{sub}m{i}.py", self.small_size())
                self.add_file(layer, f"{base}/{sub}__pycache__/m{i}.cpython-311.pyc", self.small_size())
                n += 2
        if r.random() < 0.15:
            self.add_file(layer, f"etc/{name}/{name}.conf", self.small_size())
            n += 1
        self.add_file(layer, f"var/lib/dpkg/info/{name}.list", self.small_size())
        self.add_file(layer, f"var/lib/dpkg/info/{name}.md5sums", self.small_size())
        n += 2
        return n

    def upper_changes(self, layer, k):
        """Changes of a layer above the bottom one to what the layers below show."""
        r = self.rng
        files = sorted(p for p, t in self.merged.items() if t == "f" and not p.startswith(("opt/", "var/cache/")))
        docs = sorted(p for p, t in self.merged.items()
                      if t == "d" and p.startswith("usr/share/doc/") and p.count("/") == 3)
        # Whiteouts of files (about 1% of the files below).
        for p in r.sample(files, max(1, len(files) // 100)):
            if self.merged.get(p) == "f":
                self.whiteout(layer, p)
        # Whiteouts of whole directories: removed packages' docs, one language.
        for d in r.sample(docs, min(len(docs), 2 + k)):
            if self.merged.get(d) == "d":
                self.whiteout(layer, d)
        langs = sorted(p for p, t in self.merged.items()
                       if t == "d" and p.startswith("usr/share/locale/") and p.count("/") == 3)
        if langs:
            self.whiteout(layer, r.choice(langs))
        # Opaque directories: reinstalled packages' docs replace the old ones.
        docs = [d for d in docs if self.merged.get(d) == "d"]
        for d in r.sample(docs, min(len(docs), 2 + k)):
            self.opaque_dir(layer, d)
            self.add_file(layer, f"{d}/copyright", self.small_size())
            self.add_file(layer, f"{d}/changelog.Debian.gz", self.small_size())
        # Rewritten files (about 2%): configuration, the dpkg database.
        files = [p for p in files if self.merged.get(p) == "f"]
        for p in r.sample(files, max(1, len(files) // 50)):
            self.add_file(layer, p, self.small_size())
            self.rewrites += 1
        self.add_file(layer, "var/lib/dpkg/status", 200_000 + 20_000 * k)

    def build(self, layers, nfiles, bigdir, big_mib, meta_files):
        base = os.path.join(self.out, "layers")
        os.makedirs(base)
        for i in range(layers):
            d = os.path.join(base, f"l{i + 1}")
            os.mkdir(d)
            self.layer_dirs.append(d)
        # Base layer: ~60% of the files; the rest spread over the layers above.
        shares = [0.6] + [0.4 / (layers - 1)] * (layers - 1) if layers > 1 else [1.0]
        for layer in range(layers):
            if layer > 0:
                self.upper_changes(layer, layer)
            goal = int(nfiles * shares[layer])
            done = 0
            if layer == 0:
                for name in ("passwd", "group", "hostname", "os-release", "ld.so.cache"):
                    self.add_file(0, f"etc/{name}", self.small_size())
                self.add_file(0, "var/lib/dpkg/status", 200_000)
            while done < goal:
                done += self.package(layer, self.pkg_name(), goal - done)
        # The big directory, merged from 4 layers (the top 4: each adds a quarter).
        parts = min(4, layers)
        for i in range(bigdir):
            self.add_file(layers - parts + i % parts, f"var/cache/bigdir/entry-{i:06d}", 0)
        # The tree that chown -R and chmod -R change: all in the bottom layer.
        for i in range(meta_files):
            self.add_file(0, f"srv/meta/d{i // 100:04d}/f{i:06d}", self.small_size())
        # The big file (real data) and the sparse file, in the bottom layer.
        mib = 1 << 20
        self.add_file(0, "opt/data/big.bin", big_mib * mib)
        rel = "opt/data/sparse.bin"
        self._ensure_parents(0, rel)
        with open(os.path.join(self.layer_dirs[0], rel), "wb") as f:
            for off in range(0, big_mib, SPARSE_STRIDE_MIB):
                f.seek(off * mib)
                f.write(self.chunk)
            f.truncate(big_mib * mib)
        self.merged[rel] = "f"

    def materialise(self, dest):
        """Writes the merged view as a plain directory: each entry from the topmost layer
        that has it, file data copied (holes kept), modes and symlink targets as they are."""
        os.mkdir(dest)
        for rel in sorted(self.merged):
            src = next(p for p in (os.path.join(d, rel) for d in reversed(self.layer_dirs))
                       if os.path.lexists(p))
            dst = os.path.join(dest, rel)
            kind = self.merged[rel]
            if kind == "d":
                os.mkdir(dst)
            elif kind == "l":
                os.symlink(os.readlink(src), dst)
            else:
                copy_keeping_holes(src, dst)
            if kind != "l":
                os.chmod(dst, stat.S_IMODE(os.lstat(src).st_mode))

    def count(self, prefix=""):
        if not prefix:
            return len(self.merged)
        p = prefix + "/"
        return sum(1 for k in self.merged if k.startswith(p))

    def count_files(self, prefix):
        p = prefix + "/"
        return sum(1 for k, t in self.merged.items() if k.startswith(p) and t != "d")


def copy_keeping_holes(src, dst):
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        size = os.fstat(fi.fileno()).st_size
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fi.fileno(), pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            hole = os.lseek(fi.fileno(), data, os.SEEK_HOLE)
            os.lseek(fi.fileno(), data, os.SEEK_SET)
            fo.seek(data)
            left = hole - data
            while left > 0:
                buf = fi.read(min(left, 1 << 20))
                if not buf:
                    break
                fo.write(buf)
                left -= len(buf)
            pos = hole
        fo.truncate(size)


def depth_stacks(out, depths, nfiles, rng):
    """The lookup-depth stacks: for each N, OUTDIR/depth/N/0 (bottom) .. N-1, every layer
    with the same DEPTH_DIRS directories, file j in layer j mod N. OUTDIR/depth/plain
    is the merged tree; exist.txt and missing.txt list the paths to look up."""
    base = os.path.join(out, "depth")
    files = [f"d{j % DEPTH_DIRS:02d}/f{j:05d}" for j in range(nfiles)]
    for n in depths:
        for layer in range(n):
            ld = os.path.join(base, str(n), str(layer))
            for d in range(DEPTH_DIRS):
                os.makedirs(os.path.join(ld, f"d{d:02d}"))
        for j, rel in enumerate(files):
            with open(os.path.join(base, str(n), str(j % n), rel), "wb") as f:
                f.write(b"x" * 100)
    plain = os.path.join(base, "plain")
    for d in range(DEPTH_DIRS):
        os.makedirs(os.path.join(plain, f"d{d:02d}"))
    for rel in files:
        with open(os.path.join(plain, rel), "wb") as f:
            f.write(b"x" * 100)
    exist = list(files)
    rng.shuffle(exist)
    missing = [f"d{j % DEPTH_DIRS:02d}/missing{j:05d}" for j in range(nfiles)]
    rng.shuffle(missing)
    for name, paths in (("exist.txt", exist), ("missing.txt", missing)):
        with open(os.path.join(base, name), "w") as f:
            f.write("\n".join(paths) + "\n")
    return {
        "depths": depths,
        "layers": {str(n): [os.path.join(base, str(n), str(i)) for i in range(n)] for n in depths},
        "plain": plain,
        "exist": os.path.join(base, "exist.txt"),
        "missing": os.path.join(base, "missing.txt"),
        "files": nfiles,
        "dirs": DEPTH_DIRS,
    }


def make_tarball(path, nfiles, gen):
    """A tarball of nfiles small files in 2 levels of directories (40 files each),
    deterministic (fixed names, sizes, data and times)."""
    rng = random.Random(7)
    dirs = 0
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        def add_dir(name):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = 1_700_000_000
            tar.addfile(info)

        add_dir("bench-untar")
        for i in range(nfiles):
            if i % 40 == 0:
                if i % 1600 == 0:
                    add_dir(f"bench-untar/a{i // 1600:03d}")
                    dirs += 1
                add_dir(f"bench-untar/a{i // 1600:03d}/b{i // 40 % 40:02d}")
                dirs += 1
            size = min(int(rng.lognormvariate(7.3, 1.4)), 256 << 10)
            off = rng.randrange(0, len(gen.chunk) - size + 1)
            info = tarfile.TarInfo(f"bench-untar/a{i // 1600:03d}/b{i // 40 % 40:02d}/f{i:06d}")
            info.size = size
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(gen.chunk[off : off + size]))
    return {"path": path, "files": nfiles, "dirs": dirs + 1}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    out = sys.argv[1]
    layers = env_int("BENCH_LAYERS")
    if layers < 4:
        sys.exit("BENCH_LAYERS must be at least 4")
    depths = [int(x) for x in (os.environ.get("BENCH_DEPTHS") or DEPTHS_DEFAULT).split(",") if x]
    gen = Gen(out, os.geteuid() == 0)
    big_mib = env_int("BENCH_BIG_MIB")
    gen.build(layers, env_int("BENCH_FILES"), env_int("BENCH_BIGDIR"), big_mib,
              env_int("BENCH_META_FILES"))
    gen.materialise(os.path.join(out, "plain"))
    mib = 1 << 20
    layer_files = 0
    for d in gen.layer_dirs:
        for _, _, fnames in os.walk(d):
            layer_files += len(fnames)
    manifest = {
        "layers": gen.layer_dirs,  # bottom first
        "plain": os.path.join(out, "plain"),
        "whiteout_format": "kernel" if gen.root else "oci",
        "sizes": {k: env_int(k) for k in SIZES} | {"BENCH_DEPTHS": ",".join(map(str, depths))},
        "entries_in_layers": layer_files,
        "whiteouts": gen.whiteouts,
        "opaque_dirs": gen.opaques,
        "rewritten_files": gen.rewrites,
        "merged_entries": gen.count(),
        "big": {"path": "opt/data/big.bin", "bytes": big_mib * mib},
        "sparse": {"path": "opt/data/sparse.bin", "bytes": big_mib * mib,
                   "data_bytes": len(range(0, big_mib, SPARSE_STRIDE_MIB)) * mib},
        "bigdir": {"path": "var/cache/bigdir", "entries": gen.count("var/cache/bigdir"),
                   "layers": min(4, layers)},
        "meta": {"path": "srv/meta", "entries": gen.count("srv/meta"),
                 "files": gen.count_files("srv/meta")},
        "rm": {"path": "usr/share/locale", "entries": gen.count("usr/share/locale"),
               "files": gen.count_files("usr/share/locale")},
        "tar": make_tarball(os.path.join(out, "untar.tar"), env_int("BENCH_UNTAR_FILES"), gen),
        "depth": depth_stacks(out, depths, env_int("BENCH_DEPTH_FILES"), random.Random(11)),
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"layers: {layers}, files in the layers: {layer_files}, merged entries: {manifest['merged_entries']}, "
          f"whiteouts: {gen.whiteouts}, opaque dirs: {gen.opaques}, rewritten files: {gen.rewrites}; "
          f"big file {big_mib} MiB; depth stacks {','.join(map(str, depths))} layers")


if __name__ == "__main__":
    main()
