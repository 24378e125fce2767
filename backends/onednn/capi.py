"""oneDNN's C API through ctypes: the few calls the lowering makes, each status turned into one `DnnlError`.

Why ctypes and not a compiled extension: the library (pip ``onednn-cpu-gomp``, oneDNN 3.2, linked to the system's
GNU OpenMP) is called ~100 times per network call, each a ~1 µs crossing, against the tens of µs torch spends in
front of the same primitive; nothing has to be built at install time. torch and OpenVINO each bundle a oneDNN too,
but neither exports its symbols.

The enum values are oneDNN 3.2's (``oneapi/dnnl/dnnl_types.h`` of ``onednn-devel-cpu-gomp==2023.2.0``, printed
by a C program compiled against it); `load` refuses any other major.minor, so a changed enum cannot be misread.
Logical dims are always in NCHW/OIHW order; the layout is the memory descriptor's format tag.
"""

from __future__ import annotations

import ctypes as C
import functools
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VERSION = (3, 2)  # the oneDNN these constants are taken from
INSTALL = "pip install -c constraints.txt 'convbench[onednn]'"

# dnnl_data_type_t
F16, BF16, F32, S32, S8, U8 = 1, 2, 3, 4, 5, 6
DTYPES = {"float32": F32, "bfloat16": BF16, "float16": F16, "int8": F32}  # int8: the float parts run float32
CODES = {"int8": S8, "uint8": U8, "int32": S32}  # an IR int type -> its oneDNN data type
ITEMSIZE = {F16: 2, BF16: 2, F32: 4, S32: 4, S8: 1, U8: 1}
# dnnl_format_tag_t: any lets the primitive choose (weights: its blocked layout); the rest are plain orders
ANY, A, AB, ABC, ABCD, ABCDE, ACDB = 1, 2, 3, 4, 5, 6, 22
PLAIN = {1: A, 2: AB, 3: ABC, 4: ABCD, 5: ABCDE}
NHWC = ACDB
FORWARD_INFERENCE = 96
CONVOLUTION_DIRECT = 1
# dnnl_alg_kind_t
ELTWISE_RELU, ELTWISE_TANH, ELTWISE_ELU, ELTWISE_LINEAR = 0x20, 0x21, 0x22, 38
ELTWISE_HARDSIGMOID, ELTWISE_LOGISTIC, ELTWISE_SWISH, ELTWISE_CLIP_V2, ELTWISE_HARDSWISH = 40, 41, 44, 47, 52
POOLING_MAX, POOLING_AVG_INCLUDE, POOLING_AVG_EXCLUDE = 0x1FF, 0x2FF, 0x3FF
BINARY_ADD, BINARY_MUL, BINARY_DIV, BINARY_SUB = 0x1FFF0, 0x1FFF1, 0x1FFF4, 0x1FFF5
SOFTMAX_ACCURATE = 0x30000
LRN_ACROSS_CHANNELS = 0xAFF
# batch normalization flags
USE_GLOBAL_STATS, USE_SCALE, USE_SHIFT = 0x1, 0x2, 0x4
# execution argument indices (DNNL_ARG_*)
SRC, SRC_1, DST, WEIGHTS, BIAS, MEAN, VARIANCE, SCALE, SHIFT, SCRATCHPAD = 1, 2, 17, 33, 41, 49, 50, 51, 52, 80
MULTIPLE_SRC = 1024
ATTR_SCALES, ATTR_ZERO_POINTS = 4096, 8192  # | SRC/WEIGHTS/DST: that argument's scales / zero points at run time
FROM, TO = SRC, DST


def post_op_arg(index: int, arg: int) -> int:
    """DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) | arg: a binary post-op's second input."""
    return 32768 * (index + 1) | arg


# dnnl_query_t
Q_IMPL_INFO_STR, Q_SRC_MD, Q_WEIGHTS_MD, Q_DST_MD, Q_SCRATCHPAD_MD, Q_DATA_TYPE = 8, 129, 131, 133, 136, 258
STATUS = {1: "out of memory", 2: "invalid arguments", 3: "unimplemented", 4: "last implementation reached",
          5: "runtime error", 6: "not required", 7: "invalid graph"}
UNIMPLEMENTED = 3
ALLOCATE = C.c_void_p(2**64 - 1)  # DNNL_MEMORY_ALLOCATE: the library allocates the buffer

Dims = C.c_int64 * 12
Handle = C.c_void_p


class Arg(C.Structure):
    _fields_ = [("arg", C.c_int), ("memory", Handle)]


class DnnlError(RuntimeError):
    """A oneDNN call failed; ``status`` is its dnnl_status_t (3: no implementation for these descriptors)."""

    def __init__(self, what: str, status: int):
        self.status = status
        super().__init__(f"{what}: oneDNN says {STATUS.get(status, f'status {status}')}")


def check(status: int, what: str) -> None:
    if status != 0:
        raise DnnlError(what, status)


def dims(values: Sequence[int]) -> Dims:
    return Dims(*[int(v) for v in values])


@functools.cache
def load() -> C.CDLL:
    """libdnnl from this environment's lib/ (where the wheel installs it), or one the loader finds; a oneDNN other
    than `VERSION` is refused. Raises OSError with the reason."""
    candidates = [os.path.join(sys.prefix, "lib", "libdnnl.so.3"), "libdnnl.so.3"]
    errors = []
    for path in candidates:
        try:
            lib = C.CDLL(path)
            break
        except OSError as e:
            errors.append(str(e))
    else:
        raise OSError(f"libdnnl.so.3 not found ({'; '.join(errors)}); {INSTALL}")

    class Version(C.Structure):
        _fields_ = [("major", C.c_int), ("minor", C.c_int), ("patch", C.c_int), ("hash", C.c_char_p),
                    ("cpu_runtime", C.c_uint), ("gpu_runtime", C.c_uint)]

    lib.dnnl_version.restype = C.POINTER(Version)
    v = lib.dnnl_version().contents
    if (v.major, v.minor) != VERSION:
        raise OSError(f"{path} is oneDNN {v.major}.{v.minor}.{v.patch}; this backend's constants are oneDNN "
                      f"{VERSION[0]}.{VERSION[1]}'s: {INSTALL}")
    lib.version = f"{v.major}.{v.minor}.{v.patch}"
    lib.dnnl_primitive_desc_query_md.restype = Handle
    lib.dnnl_primitive_desc_query_md.argtypes = [Handle, C.c_int, C.c_int]
    lib.dnnl_memory_desc_get_size.restype = C.c_size_t
    lib.dnnl_memory_desc_get_size.argtypes = [Handle]
    lib.dnnl_memory_desc_equal.argtypes = [Handle, Handle]
    lib.dnnl_memory_desc_query.argtypes = [Handle, C.c_int, Handle]
    lib.dnnl_primitive_desc_query.argtypes = [Handle, C.c_int, C.c_int, Handle]
    lib.dnnl_primitive_execute.argtypes = [Handle, Handle, C.c_int, Handle]
    for name in ("dnnl_eltwise_forward_primitive_desc_create", "dnnl_post_ops_append_eltwise",
                 "dnnl_lrn_forward_primitive_desc_create", "dnnl_batch_normalization_forward_primitive_desc_create",
                 "dnnl_post_ops_append_sum"):
        getattr(lib, name).restype = C.c_int
    lib.dnnl_eltwise_forward_primitive_desc_create.argtypes = [
        Handle, Handle, C.c_int, C.c_int, Handle, Handle, C.c_float, C.c_float, Handle]
    lib.dnnl_post_ops_append_eltwise.argtypes = [Handle, C.c_int, C.c_float, C.c_float]
    lib.dnnl_post_ops_append_sum.argtypes = [Handle, C.c_float, C.c_int32, C.c_int]
    lib.dnnl_lrn_forward_primitive_desc_create.argtypes = [
        Handle, Handle, C.c_int, C.c_int, Handle, Handle, C.c_int64, C.c_float, C.c_float, C.c_float, Handle]
    lib.dnnl_batch_normalization_forward_primitive_desc_create.argtypes = [
        Handle, Handle, C.c_int, Handle, Handle, C.c_float, C.c_uint, Handle]
    return lib


@functools.cache
def omp() -> C.CDLL:
    """The GNU OpenMP runtime libdnnl runs on (the system's libgomp.so.1, not the copy torch bundles under another
    name): its thread count is this backend's, whatever torch's is."""
    load()
    return C.CDLL("libgomp.so.1")


class Engine:
    """The CPU engine and its one in-order stream (primitives run one after another on the caller's thread)."""

    def __init__(self) -> None:
        self.lib = lib = load()
        self.engine, self.stream = Handle(), Handle()
        check(lib.dnnl_engine_create(C.byref(self.engine), 1, 0), "creating the CPU engine")
        check(lib.dnnl_stream_create(C.byref(self.stream), self.engine, 1), "creating a stream")

    def md(self, shape: Sequence[int], dtype: int, tag: int) -> Handle:
        m = Handle()
        check(self.lib.dnnl_memory_desc_create_with_tag(C.byref(m), len(shape), dims(shape), dtype, tag),
              f"a memory descriptor of shape {tuple(shape)}")
        return m

    def reshaped(self, md: Handle, shape: Sequence[int]) -> Handle:
        m = Handle()
        check(self.lib.dnnl_memory_desc_reshape(C.byref(m), md, len(shape), dims(shape)),
              f"viewing a tensor as shape {tuple(shape)}")
        return m

    def submemory(self, md: Handle, shape: Sequence[int], offsets: Sequence[int]) -> Handle:
        m = Handle()
        check(self.lib.dnnl_memory_desc_create_submemory(C.byref(m), md, dims(shape), dims(offsets)),
              f"a window of shape {tuple(shape)} at {tuple(offsets)}")
        return m

    def dtype(self, md: Handle) -> int:
        dt = C.c_int()
        check(self.lib.dnnl_memory_desc_query(md, Q_DATA_TYPE, C.byref(dt)), "querying a data type")
        return dt.value

    def size(self, md: Handle) -> int:
        return int(self.lib.dnnl_memory_desc_get_size(md))

    def equal(self, a: Handle, b: Handle) -> bool:
        return bool(self.lib.dnnl_memory_desc_equal(a, b))

    def memory(self, md: Handle, buffer: Buffer | None) -> Handle:
        h = Handle()
        check(self.lib.dnnl_memory_create(C.byref(h), md, self.engine,
                                          Handle(buffer.address) if buffer is not None else ALLOCATE),
              "creating a memory object")
        return h

    def set_handle(self, memory: Handle, address: int) -> None:
        check(self.lib.dnnl_memory_set_data_handle(memory, Handle(address)), "binding a buffer")

    def wait(self) -> None:
        check(self.lib.dnnl_stream_wait(self.stream), "waiting for the stream")


class Attr:
    """A primitive attribute: user scratchpad (one buffer shared by every primitive), post-ops, fpmath."""

    def __init__(self, engine: Engine) -> None:
        self.lib = engine.lib
        self.handle, self.post_ops = Handle(), Handle()
        check(self.lib.dnnl_primitive_attr_create(C.byref(self.handle)), "creating an attribute")
        check(self.lib.dnnl_primitive_attr_set_scratchpad_mode(self.handle, 1), "user scratchpad")
        check(self.lib.dnnl_post_ops_create(C.byref(self.post_ops)), "creating post-ops")
        self.count = 0

    def eltwise(self, alg: int, alpha: float, beta: float) -> None:
        check(self.lib.dnnl_post_ops_append_eltwise(self.post_ops, alg, alpha, beta), "an eltwise post-op")
        self.count += 1

    def sum(self) -> None:
        """dst += the primitive's result: the destination is read first (it holds the residual, in place)."""
        check(self.lib.dnnl_post_ops_append_sum(self.post_ops, 1.0, 0, 0), "a sum post-op")
        self.count += 1

    def binary(self, alg: int, md: Handle) -> int:
        """A binary post-op reading a second tensor; returns its index (for `post_op_arg`)."""
        check(self.lib.dnnl_post_ops_append_binary(self.post_ops, alg, md), "a binary post-op")
        self.count += 1
        return self.count - 1

    def scales(self, arg: int, mask: int) -> None:
        """``arg``'s scales come at run time (ATTR_SCALES | arg): one (mask 0) or one per index of the masked dims."""
        check(self.lib.dnnl_primitive_attr_set_scales_mask(self.handle, arg, mask), "setting scales")

    def zero_points(self, arg: int, mask: int) -> None:
        check(self.lib.dnnl_primitive_attr_set_zero_points_mask(self.handle, arg, mask), "setting zero points")

    def done(self) -> Handle:
        if self.count:
            check(self.lib.dnnl_primitive_attr_set_post_ops(self.handle, self.post_ops), "setting post-ops")
        return self.handle


@dataclass
class Primitive:
    """A created primitive and its descriptor's queried memory descriptors."""

    pd: Handle
    handle: Handle
    impl: str
    scratchpad: int  # bytes

    def md(self, lib: C.CDLL, query: int, index: int = 0) -> Handle:
        return Handle(lib.dnnl_primitive_desc_query_md(self.pd, query, index))


def primitive(engine: Engine, create, *args, what: str) -> Primitive:
    """``create(&pd, *args)`` then the primitive; the implementation name is kept for the report."""
    lib = engine.lib
    pd = Handle()
    check(create(C.byref(pd), *args), what)
    impl = C.c_char_p()
    check(lib.dnnl_primitive_desc_query(pd, Q_IMPL_INFO_STR, 0, C.byref(impl)), what)
    handle = Handle()
    check(lib.dnnl_primitive_create(C.byref(handle), pd), what)
    scratch = int(lib.dnnl_memory_desc_get_size(lib.dnnl_primitive_desc_query_md(pd, Q_SCRATCHPAD_MD, 0)))
    return Primitive(pd, handle, (impl.value or b"").decode(), scratch)


class Buffer:
    """64-byte aligned bytes a memory object points into (NumPy owns them; the lowering keeps them alive)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = max(int(nbytes), 1)
        self.pooled = True  # False: a constant's or a pad's own buffer, never handed to another value
        self.raw = np.empty(self.nbytes + 64, np.uint8)
        self.offset = (-self.raw.ctypes.data) % 64
        self.address = self.raw.ctypes.data + self.offset

    def view(self, dtype: np.dtype, shape: Sequence[int]) -> np.ndarray:
        count = int(np.prod(shape))
        return self.raw[self.offset:self.offset + count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)
