"""Tools, and the TensorFlow Lite Micro library built for one target.

The library is compiled from a TFLite-Micro source tree the user points to (a
folder, or a `.tar.xz`/`.tar.gz` of one, unpacked once into the cache). Its
own Makefile is asked which sources, flags and include folders a target uses
(`cortex_m_generic`, with `OPTIMIZED_KERNEL_DIR=cmsis_nn` or the reference
kernels); then only the kernels the model registers are compiled (every
kernel file that defines a `Register_<OP>` the model's resolver does not call
is left out), with TFLM's optimisation levels. Object files are cached by
source content, flags and tree, so the second build of any model for a
target compiles nothing but the model. A missing object is first looked up
by what the compiler would see (the preprocessed source and the code
generation flags, as ccache's preprocessor mode does): the core files that
the reference and the CMSIS-NN builds of a CPU preprocess alike are compiled
once.

Why not TFLM's `make microlite`: it compiles every kernel (about 9 minutes on
two cores) and its cortex_m_qemu target forces soft float, which disables
Helium on the M55.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

__all__ = ["ToolMissing", "Toolchain", "find_toolchain", "tflm_root", "Library",
           "build_library", "cache_dir"]

_MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
_PACKAGES = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi (with libnewlib-arm-none-eabi and "
                         "libstdc++-arm-none-eabi-newlib)",
    "arm-none-eabi-g++": "gcc-arm-none-eabi and libstdc++-arm-none-eabi-newlib",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "arm-none-eabi-nm": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "cc": "gcc (a host C compiler, to build the instruction-counting QEMU plugin)",
    "make": "make",
}


class ToolMissing(RuntimeError):
    """A program the firmware build or run needs is not installed."""


def cache_dir() -> Path:
    """Where unpacked trees, object files and the QEMU plugin are kept
    (`$TFLITE_EXPORT_CACHE`, else `~/.cache/tflite_export/firmware`)."""
    root = os.environ.get("TFLITE_EXPORT_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "tflite_export" / "firmware"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _cache_lock():
    """Hold the cache's lock: processes that unpack or compile into it at the
    same time (parallel tests, a benchmark beside a notebook) wait for each
    other and take the first one's files instead of doing the same work twice.
    Without `fcntl` (Windows) there is no lock; each write stays atomic."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(cache_dir() / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclasses.dataclass(frozen=True)
class Toolchain:
    gcc: str
    gxx: str
    size: str
    nm: str
    qemu: str
    host_cc: str
    make: str

    def version(self) -> str:
        out = subprocess.run([self.gcc, "--version"], capture_output=True, text=True)
        return out.stdout.splitlines()[0] if out.stdout else "unknown"


def _which(program: str, search: str | None) -> str:
    if search:
        candidate = Path(search) / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(program)
    if found is None:
        where = f" in {search} or" if search else ""
        raise ToolMissing(
            f"`{program}` was not found{where} on PATH. On Debian or Ubuntu install it with "
            f"`apt-get install {_PACKAGES[program].split(' ')[0]}` (package "
            f"{_PACKAGES[program]}); or download the Arm GNU Toolchain and pass its bin/ "
            "folder as `toolchain=`.")
    return found


def find_toolchain(toolchain: str | os.PathLike | None = None, need_qemu: bool = True
                   ) -> Toolchain:
    """The Arm GNU toolchain (from `toolchain`, a bin/ folder, else PATH),
    QEMU and a host C compiler; `ToolMissing` names the package of any absent."""
    search = str(toolchain) if toolchain else None
    gcc = _which("arm-none-eabi-gcc", search)
    gxx = _which("arm-none-eabi-g++", search)
    size = _which("arm-none-eabi-size", search)
    nm = _which("arm-none-eabi-nm", search)
    qemu = _which("qemu-system-arm", None) if need_qemu else ""
    host_cc = (shutil.which("cc") or shutil.which("gcc") or "") if need_qemu else ""
    if need_qemu and not host_cc:
        _which("cc", None)
    make = _which("make", None)
    return Toolchain(gcc, gxx, size, nm, qemu, host_cc, make)


# ------------------------------------------------------------------ the tree
def tflm_root(source: str | os.PathLike) -> Path:
    """The root of a TFLite-Micro tree: `source` itself, its single top
    folder, or (for an archive) its unpacked copy in the cache."""
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"TFLite-Micro source {path} does not exist; pass the folder "
                                "of a tflite-micro checkout (with its third-party downloads) "
                                "or an archive of one.")
    if path.is_file():
        stat = path.stat()
        key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        target = cache_dir() / "tflm" / key.hexdigest()[:16]
        with _cache_lock():
            _unpack(path, target)
        path = target
    for candidate in [path, *sorted(p for p in path.iterdir() if p.is_dir())]:
        if (candidate / _MAKEFILE).is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"{source} holds no TensorFlow Lite Micro tree ({_MAKEFILE} "
                            "not found).")


def _unpack(archive: Path, target: Path) -> None:
    """Unpack `archive` into `target` unless an earlier call did."""
    if (target / ".unpacked").exists():
        return
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
    except tarfile.TarError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ValueError(f"cannot unpack TFLite-Micro archive {archive}: {exc}") from None
    (staging / ".unpacked").touch()
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def _tree_id(root: Path) -> str:
    """What names a tree in the cache: its git commit when there is one, else
    its path and the Makefile's timestamp."""
    head = root / ".git" / "HEAD"
    if head.is_file():
        return head.read_text().strip()
    return f"{root}:{(root / _MAKEFILE).stat().st_mtime_ns}"


# ------------------------------------------------------------------ make queries
# Unquoted: the shell then treats the flags as it does in TFLM's own recipes.
_PRINT_MK = """
kc_query:
\t@echo CXXFLAGS=$(CXXFLAGS)
\t@echo CCFLAGS=$(CCFLAGS)
\t@echo INCLUDES=$(INCLUDES)
\t@echo CORE_OPT=$(CORE_OPTIMIZATION_LEVEL)
\t@echo KERNEL_OPT=$(KERNEL_OPTIMIZATION_LEVEL)
\t@echo THIRD_PARTY_OPT=$(THIRD_PARTY_KERNEL_OPTIMIZATION_LEVEL)
\t@echo SOURCES=$(MICROLITE_CC_SRCS)
\t@echo KERNEL_SOURCES=$(MICROLITE_CC_KERNEL_SRCS)
\t@echo THIRD_PARTY=$(THIRD_PARTY_CC_SRCS)
\t@echo THIRD_PARTY_KERNELS=$(THIRD_PARTY_KERNEL_CC_SRCS)
"""


@dataclasses.dataclass(frozen=True)
class _Config:
    cxxflags: list[str]
    ccflags: list[str]
    includes: list[str]
    core_opt: str
    kernel_opt: str
    third_party_opt: str
    sources: list[str]
    kernel_sources: list[str]
    third_party: list[str]


def _make_vars(cpu: str, kernels: str, tools: Toolchain) -> list[str]:
    # No USE_TFLM_COMPRESSION: it guards TFLite-Micro's per-kernel compressed
    # tensors, which no model here uses, and its Makefile honours it only for
    # the linux and xtensa targets. DECODE ops (compress_micro, compress_lut)
    # and the decompression buffer need no flag.
    values = ["TARGET=cortex_m_generic", f"TARGET_ARCH={cpu}",
              f"TARGET_TOOLCHAIN_ROOT={Path(tools.gcc).parent}/"]
    if kernels == "cmsis_nn":
        values.append("OPTIMIZED_KERNEL_DIR=cmsis_nn")
    return values


def _query(root: Path, cpu: str, kernels: str, tools: Toolchain) -> _Config:
    cache = cache_dir() / "queries"
    cache.mkdir(exist_ok=True)
    key = hashlib.sha256(repr((_tree_id(root), cpu, kernels, tools.gcc))
                         .encode()).hexdigest()[:20]
    saved = cache / f"{key}.txt"
    if saved.exists():
        text = saved.read_text()
    else:
        mk = cache / f"query{os.getpid()}.mk"
        mk.write_text(_PRINT_MK)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        proc = subprocess.run(
            [tools.make, "-s", "-f", _MAKEFILE, "-f", str(mk), *_make_vars(cpu, kernels, tools),
             "kc_query"], cwd=root, capture_output=True, text=True, env=env, timeout=300)
        mk.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise RuntimeError(f"TFLite-Micro's Makefile in {root} refused target {cpu} "
                               f"({kernels} kernels): {proc.stderr.strip()[-800:]}")
        text = proc.stdout
        tmp = saved.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, saved)
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def flags(name: str) -> list[str]:
        # -MD writes dependency files we do not use.
        return [f for f in values.get(name, "").split() if f != "-MD"]

    return _Config(flags("CXXFLAGS"), flags("CCFLAGS"), flags("INCLUDES"),
                   values.get("CORE_OPT", "-Os").strip(), values.get("KERNEL_OPT", "-O2").strip(),
                   values.get("THIRD_PARTY_OPT", "-O2").strip(), values["SOURCES"].split(),
                   values["KERNEL_SOURCES"].split(),
                   values["THIRD_PARTY"].split() + values["THIRD_PARTY_KERNELS"].split())


# ------------------------------------------------------------------ kernels
_DEFINES = re.compile(r"TFLMRegistration\s*\*?\s*Register_([A-Z0-9_]+)\s*\([^;{]*\)\s*\{")
_CALLS = re.compile(r"\bRegister_([A-Z0-9_]+)\s*\(")


def registrations(root: Path, methods: list[str]) -> set[str]:
    """The `Register_<X>` functions the resolver's `methods` (AddConv2D, ...) call."""
    header = (root / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    needed: set[str] = set()
    for method in methods:
        match = re.search(rf"TfLiteStatus\s+{method}\s*\(", header)
        if match is None:
            raise ValueError(f"TFLite-Micro's MicroMutableOpResolver in {root} has no {method}(): "
                             "this tree has no kernel for that op.")
        # The method's signature and body, up to the next method.
        end = header.find("TfLiteStatus", match.end())
        needed.update(_CALLS.findall(header[match.start(): end if end > 0 else None]))
    return needed


_INCLUDE = re.compile(r'#include\s+"tensorflow/lite/micro/kernels/(?:\w+/)?(\w+)\.h"')
_CMSIS_CALL = re.compile(r"\b(arm_\w+)\s*\(")
# Core files only tests use.
_TEST_ONLY = ("test_helper", "mock_micro_graph", "fake_micro_context", "kernel_runner")


def _kernel_sources(texts: dict[str, str], needed: set[str]) -> list[str]:
    """The kernel files (`texts`: path -> source) defining a needed
    `Register_<X>`, plus the helpers they include (`foo.h` -> foo.cc,
    foo_common.cc), transitively."""
    by_stem: dict[str, list[str]] = {}
    for rel, text in texts.items():
        if not _DEFINES.search(text):
            by_stem.setdefault(Path(rel).stem.removesuffix("_common"), []).append(rel)
    kept = [rel for rel, text in texts.items() if set(_DEFINES.findall(text)) & needed]
    seen = set(kept)
    queue = list(kept)
    while queue:
        for header in _INCLUDE.findall(texts[queue.pop()]):
            for rel in by_stem.get(header, []):
                if rel not in seen:
                    seen.add(rel)
                    queue.append(rel)
    return [rel for rel in texts if rel in seen]


_C_DEFINES = re.compile(r"\b(arm_\w+)\s*\([^;{}]*\)\s*\{")


def _cmsis_sources(root: Path, third_party: list[str], users: list[str]) -> list[str]:
    """The CMSIS-NN files defining a function the kernels call, and those the
    functions they define call, transitively. (A call inside a condition can
    look like a definition: that only adds a file.)"""
    texts = {rel: (root / rel).read_text(errors="replace") for rel in third_party}
    definer: dict[str, list[str]] = {}
    for rel, text in texts.items():
        for name in set(_C_DEFINES.findall(text)):
            definer.setdefault(name, []).append(rel)
    seen: set[str] = set()
    queue = [(root / rel).read_text(errors="replace") for rel in users]
    while queue:
        for name in set(_CMSIS_CALL.findall(queue.pop())):
            for rel in definer.get(name, []):
                if rel not in seen:
                    seen.add(rel)
                    queue.append(texts[rel])
    return [rel for rel in third_party if rel in seen]


def missing_kernels(texts: dict[str, str], needed: set[str]) -> set[str]:
    """The needed `Register_<X>` no kernel file defines."""
    defined = {name for text in texts.values() for name in _DEFINES.findall(text)}
    return needed - defined


# ------------------------------------------------------------------ compile
@dataclasses.dataclass(frozen=True)
class Library:
    """The objects of a TFLite-Micro build for one target, and how to compile
    code against it."""

    root: Path
    cpu: str
    kernels: str
    objects: tuple[Path, ...]
    cxxflags: tuple[str, ...]
    ccflags: tuple[str, ...]
    includes: tuple[str, ...]
    compiled: int          # objects compiled by this call (0: all from the cache)
    seconds: float


def _content_key(compiler: str, flags: list[str], root: Path, rel: str) -> str | None:
    """What the compiler sees of `rel`: its preprocessed text (no line markers)
    and the flags that are not preprocessor flags; None if it does not
    preprocess (the compile then names the error)."""
    proc = subprocess.run([compiler, *flags, "-E", "-P", rel], cwd=root, capture_output=True)
    if proc.returncode != 0:
        return None
    digest = hashlib.sha256(proc.stdout)
    digest.update(repr((compiler, [f for f in flags if not f.startswith(("-D", "-I"))])).encode())
    return digest.hexdigest()[:24]


def _compile_one(compiler: str, flags: list[str], root: Path, rel: str,
                 out: Path) -> tuple[str | None, bool]:
    """Puts `rel`'s object at `out`; returns (error, whether it was compiled)."""
    if out.exists():
        return None, False
    key = _content_key(compiler, flags, root, rel)
    shared = out.parent / "by_content" / f"{Path(rel).stem}-{key}.o" if key else None
    if shared is not None and shared.exists():
        _place(shared, out)
        return None, False
    tmp = out.with_suffix(f".tmp{os.getpid()}.o")
    proc = subprocess.run([compiler, *flags, "-c", rel, "-o", str(tmp)], cwd=root,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        return f"{rel}: {proc.stderr.strip()[-1500:]}", True
    os.replace(tmp, out)
    if shared is not None:
        _place(out, shared)
    return None, True


def _place(source: Path, target: Path) -> None:
    """`target` becomes a hard link to (else a copy of) `source`, atomically."""
    target.parent.mkdir(exist_ok=True)
    # Two compile threads may place the same object: each writes its own file.
    tmp = target.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}.o")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _compile_all(todo: list, root: Path, cpu: str, kernels: str,
                 progress: bool) -> tuple[list[str], int]:
    """Compile (or take by content) the (compiler, flags, source, object) jobs
    `todo` on every core; returns the message of each failure and how many
    objects were compiled."""
    errors, compiled = [], 0
    workers = max(1, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_compile_one, c, f, root, r, o) for c, f, r, o in todo]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            error, did_compile = future.result()
            compiled += did_compile
            if error:
                errors.append(error)
            if progress:
                sys.stderr.write(f"\rcompiling TFLite-Micro for {cpu} ({kernels}): "
                                 f"{done}/{len(todo)}")
                sys.stderr.flush()
    if progress:
        sys.stderr.write("\n")
    return errors, compiled


def build_library(source: str | os.PathLike, cpu: str, registered: set[str],
                  kernels: str = "cmsis_nn", tools: Toolchain | None = None, progress: bool = True,
                  all_kernels: bool = False) -> Library:
    """Compile (or take from the cache) what a model's firmware links against.

    `registered`: the `Register_<X>` names the model's resolver calls
    (`registrations`). `all_kernels`: compile every kernel instead.
    """
    if kernels not in ("cmsis_nn", "reference"):
        raise ValueError(f"`kernels` must be 'cmsis_nn' or 'reference'; received {kernels!r}.")
    tools = tools or find_toolchain(need_qemu=False)
    root = tflm_root(source)
    config = _query(root, cpu, kernels, tools)
    texts = {rel: (root / rel).read_text(errors="replace") for rel in config.kernel_sources
             if rel.endswith((".cc", ".c"))}
    absent = missing_kernels(texts, registered)
    if absent:
        raise ValueError(f"TFLite-Micro ({kernels} kernels, {cpu}) has no kernel for "
                         f"{', '.join(sorted(absent))}; the model cannot run on this target.")
    if all_kernels:
        kernel_srcs, third_party = config.kernel_sources, config.third_party
        core = list(config.sources)
    else:
        kernel_srcs = _kernel_sources(texts, registered)
        third_party = _cmsis_sources(root, config.third_party, kernel_srcs)
        core = [s for s in config.sources if not any(t in s for t in _TEST_ONLY)]
    # The signal library (audio front-end ops) only when the model uses one.
    signal = any(s.startswith("signal/micro/") for s in kernel_srcs)
    core = [s for s in core if signal or not s.startswith("signal/")]
    kernel_srcs = [s for s in kernel_srcs if signal or not s.startswith("signal/")]
    jobs = []
    includes = [f if not f.startswith("-I") or os.path.isabs(f[2:]) else f"-I{root / f[2:]}"
                for f in config.includes]
    for rel, opt in ([(s, config.core_opt) for s in core]
                     + [(s, config.kernel_opt) for s in kernel_srcs]
                     + [(s, config.third_party_opt) for s in third_party]):
        is_c = rel.endswith(".c")
        compiler = tools.gcc if is_c else tools.gxx
        flags = [*(config.ccflags if is_c else config.cxxflags), opt, *includes]
        digest = hashlib.sha256()
        digest.update(repr((_tree_id(root), compiler, flags, rel)).encode())
        digest.update((root / rel).read_bytes())
        out = cache_dir() / "objects" / f"{Path(rel).stem}-{digest.hexdigest()[:20]}.o"
        jobs.append((compiler, flags, rel, out))
    (cache_dir() / "objects").mkdir(exist_ok=True)
    start = time.monotonic()
    with _cache_lock():
        todo = [j for j in jobs if not j[3].exists()]
        errors, compiled = _compile_all(todo, root, cpu, kernels, progress) if todo else ([], 0)
    if errors:
        raise RuntimeError(f"compiling TFLite-Micro for {cpu} failed in {len(errors)} file(s); "
                           f"first: {errors[0]}")
    return Library(root, cpu, kernels, tuple(j[3] for j in jobs), tuple(config.cxxflags),
                   tuple(config.ccflags), tuple(includes), compiled,
                   time.monotonic() - start)
