# v2 JSON tensors straight from the raw body (included by _codec.pyx; DESIGN.md).
#
# split_json_tensors walks a request body once: every inputs[i].data that is a regular
# nest of plain JSON numbers is parsed in C into a JsonNumbers (int64 or double values in
# one buffer: no Python float, no list) and cut out of the body; the rest (the skeleton,
# each cut array replaced by null) is small, and orjson parses it. Anything unusual (an
# escaped key, a repeated "inputs" or "data", strings, null, NaN, ragged or empty lists,
# more than 19 significant digits, a value out of double range) is not cut: the general
# path then sees exactly what orjson gives for the whole body and keeps every rule and
# message. A body this walk cannot follow gives None.

from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcmp
from cpython.exc cimport PyErr_Clear, PyErr_Occurred

cdef extern from "Python.h":
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow_exception)
from cpython.bytearray cimport PyByteArray_Resize

cdef extern from *:
    """
    static inline uint64_t fs_mul128(uint64_t a, uint64_t b, uint64_t *lo) {
        __uint128_t r = (__uint128_t)a * b;
        *lo = (uint64_t)r;
        return (uint64_t)(r >> 64);
    }
    static inline int fs_clz64(uint64_t x) { return __builtin_clzll(x); }
    static inline int fs_ctz64(uint64_t x) { return __builtin_ctzll(x); }
    #define FS_ZEROS8 0x3030303030303030ULL
    #define FS_MANT_MASK 0x000FFFFFFFFFFFFFULL
    #define FS_SIGN_BIT 0x8000000000000000ULL
    #define FS_INT64_MAX 0x7FFFFFFFFFFFFFFFULL
    static inline double fs_bits_to_double(uint64_t b) {
        double d; memcpy(&d, &b, 8); return d;
    }
    static inline uint64_t fs_read8(const unsigned char *p) {
        uint64_t v; memcpy(&v, p, 8); return v;
    }
    /* fast_float: are the 8 bytes at p all ASCII digits; their value (little-endian). */
    static inline int fs_eight_digits(uint64_t v) {
        return (((v & 0xF0F0F0F0F0F0F0F0ULL) |
                 (((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4))
                == 0x3333333333333333ULL);
    }
    /* How many of the 8 bytes at p are digits before the first non-digit (v is not all
       digits). A carry of v + 0x06.. only reaches bytes after that one. */
    static inline int fs_digit_run(uint64_t v) {
        uint64_t x = ((v & 0xF0F0F0F0F0F0F0F0ULL) |
                      (((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4))
                     ^ 0x3333333333333333ULL;
        return __builtin_ctzll(x) >> 3;
    }
    static inline uint32_t fs_parse8(uint64_t v);
    /* The value of the first n (0..7) digits at p: shifted to the end, '0's before. */
    static inline uint32_t fs_parse_head(uint64_t v, int n) {
        int s = (8 - n) * 8;
        return fs_parse8(((v << (s - 8)) << 8) | (0x3030303030303030ULL >> (64 - s)));
    }
    static inline uint32_t fs_parse8(uint64_t v) {
        const uint64_t mask = 0x000000FF000000FFULL;
        v -= 0x3030303030303030ULL;
        v = (v * 10) + (v >> 8);
        v = (((v & mask) * 0x000F424000000064ULL) +
             (((v >> 16) & mask) * 0x0000271000000001ULL)) >> 32;
        return (uint32_t)v;
    }
    """
    uint64_t FS_MANT_MASK, FS_SIGN_BIT, FS_INT64_MAX
    uint64_t fs_mul128(uint64_t a, uint64_t b, uint64_t* lo) noexcept nogil
    int fs_clz64(uint64_t x) noexcept nogil
    int fs_ctz64(uint64_t x) noexcept nogil
    uint64_t ZEROS8 "FS_ZEROS8"
    double fs_bits_to_double(uint64_t b) noexcept nogil
    uint64_t fs_read8(const unsigned char* p) noexcept nogil
    int fs_eight_digits(uint64_t v) noexcept nogil
    uint32_t fs_parse8(uint64_t v) noexcept nogil
    int fs_digit_run(uint64_t v) noexcept nogil
    uint32_t fs_parse_head(uint64_t v, int n) noexcept nogil

ctypedef const unsigned char* cptr

# 128-bit mantissas of 10**q, q in [-348, 347], rounded down (Go's strconv table).
cdef enum:
    POW10_MIN = -348
    POW10_MAX = 347
cdef uint64_t POW10_HI[696]
cdef uint64_t POW10_LO[696]
cdef double POW10_EXACT[23]  # 1e0 .. 1e22, exact as doubles
cdef uint64_t POW10_U64[8]
cdef uint64_t EXACT_DOUBLE = 1ULL << 53  # ints beyond it take the general path for floats


def _fill_pow10():
    cdef int i = 0
    for i in range(23):
        POW10_EXACT[i] = float(10 ** i)
    for i in range(8):
        POW10_U64[i] = int(10 ** i)
    i = 0
    for q in range(POW10_MIN, POW10_MAX + 1):
        if q >= 0:
            v = 10 ** q
            n = v.bit_length()
            m = v >> (n - 128) if n > 128 else v << (128 - n)
        else:
            d = 10 ** -q
            m = (1 << (127 + d.bit_length())) // d
        POW10_HI[i] = m >> 64
        POW10_LO[i] = m & 0xFFFFFFFFFFFFFFFF
        i += 1


_fill_pow10()


@cython.cdivision(True)
cdef inline bint eisel_lemire(uint64_t man, Py_ssize_t exp10, bint neg, double* out) noexcept nogil:
    """man * 10**exp10 correctly rounded (Go strconv eiselLemire64); False: undecided."""
    cdef uint64_t x_hi, x_lo, y_hi, y_lo, merged_hi, merged_lo, ret_man, ret_exp2
    cdef int clz, msb
    if man == 0:
        out[0] = -0.0 if neg else 0.0
        return True
    if exp10 < POW10_MIN or exp10 > POW10_MAX:
        return False
    clz = fs_clz64(man)
    man <<= clz
    ret_exp2 = <uint64_t>(((217706 * exp10) >> 16) + 64 + 1023) - <uint64_t>clz
    x_hi = fs_mul128(man, POW10_HI[exp10 - POW10_MIN], &x_lo)
    if (x_hi & 0x1FF) == 0x1FF and x_lo + man < man:
        y_hi = fs_mul128(man, POW10_LO[exp10 - POW10_MIN], &y_lo)
        merged_hi = x_hi
        merged_lo = x_lo + y_hi
        if merged_lo < x_lo:
            merged_hi += 1
        if (merged_hi & 0x1FF) == 0x1FF and merged_lo + 1 == 0 and y_lo + man < man:
            return False
        x_hi = merged_hi
        x_lo = merged_lo
    msb = <int>(x_hi >> 63)
    ret_man = x_hi >> (msb + 9)
    ret_exp2 -= 1 ^ msb
    if x_lo == 0 and (x_hi & 0x1FF) == 0 and (ret_man & 3) == 1:
        return False  # exactly half-way: undecided here
    ret_man += ret_man & 1
    ret_man >>= 1
    if ret_man >> 53:
        ret_man >>= 1
        ret_exp2 += 1
    if ret_exp2 - 1 >= 0x7FF - 1:
        return False  # subnormal, infinite or NaN: not plain
    ret_man = (ret_exp2 << 52) | (ret_man & FS_MANT_MASK)
    if neg:
        ret_man |= FS_SIGN_BIT
    out[0] = fs_bits_to_double(ret_man)
    return True


cdef struct Number:
    bint is_int    # an integer token (no fraction, no exponent): a Python int in orjson
    int64_t i      # its value
    double d       # a float token's value


cdef inline bint is_digit(unsigned char c) noexcept nogil:
    return <unsigned char>(c - 48) < 10


@cython.cdivision(True)
cdef cptr parse_number(cptr p, cptr end, Number* out) noexcept:
    """One JSON number token at p; the end of it, or NULL when not a plain one."""
    cdef cptr token = p
    cdef bint neg = False
    cdef uint64_t man = 0, v8
    cdef int digits = 0, n
    cdef Py_ssize_t exp10 = 0, e = 0
    cdef bint eneg = False
    cdef unsigned char c
    if p < end and p[0] == 45:  # '-'
        neg = True
        p += 1
    if p >= end or not is_digit(p[0]):
        return NULL
    if p[0] == 48:  # '0': no leading zeros in JSON
        p += 1
        if p < end and is_digit(p[0]):
            return NULL
    else:
        while p < end and is_digit(p[0]):
            man = man * 10 + (p[0] - 48)
            digits += 1
            p += 1
    out.is_int = True
    if p < end and p[0] == 46:  # '.'
        out.is_int = False
        p += 1
        if p >= end or not is_digit(p[0]):
            return NULL
        if man == 0:  # 0.00...: leading zeros are not significant digits
            while p < end and p[0] == 48:
                exp10 -= 1
                p += 1
        while True:  # 8 digits at a time (fast_float), then the rest of them at once
            if end - p < 8:
                while p < end and is_digit(p[0]):
                    man = man * 10 + (p[0] - 48)
                    digits += 1
                    exp10 -= 1
                    p += 1
                break
            v8 = fs_read8(p)
            if not fs_eight_digits(v8):
                n = fs_digit_run(v8)  # 0..7, no branch on it
                man = man * POW10_U64[n] + fs_parse_head(v8, n)
                digits += n
                exp10 -= n
                p += n
                break
            man = man * 100000000 + fs_parse8(v8)
            digits += 8
            exp10 -= 8
            p += 8
    if p < end and (p[0] == 101 or p[0] == 69):  # 'e' 'E'
        out.is_int = False
        p += 1
        if p < end and (p[0] == 43 or p[0] == 45):
            eneg = p[0] == 45
            p += 1
        if p >= end or not is_digit(p[0]):
            return NULL
        while p < end and is_digit(p[0]):
            if e < 100000:
                e = e * 10 + (p[0] - 48)
            p += 1
        if e >= 100000:
            return NULL  # far out of range (and e stops counting): the general path
        exp10 += -e if eneg else e
    if out.is_int:
        if digits > 19:
            return NULL  # beyond int64: the general path
        if neg:
            if man > FS_SIGN_BIT:
                return NULL
            out.i = <int64_t>(<uint64_t>0 - man)
        else:
            if man > FS_INT64_MAX:
                return NULL
            out.i = <int64_t>man
        return p
    if digits <= 19:  # man is exact
        if eisel_lemire(man, exp10, neg, &out.d):
            return p
        if man <= EXACT_DOUBLE and -22 <= exp10 <= 22:
            # Clinger: two exact doubles, one IEEE operation rounds correctly (exact
            # results such as 1.5 are what the rounded-down table leaves undecided).
            out.d = <double>man / POW10_EXACT[-exp10] if exp10 < 0 else \
                <double>man * POW10_EXACT[exp10]
            if neg:
                out.d = -out.d
            return p
    return undecided(token, p, out)


cdef cptr undecided(cptr token, cptr p, Number* out) noexcept:
    """A float token Eisel-Lemire left undecided (about 1 in 1000 float32 values, e.g.
    0.13965606689453125): Python's correctly rounded strtod, as orjson rounds."""
    cdef char text[72]
    cdef char* stop
    cdef Py_ssize_t n = p - token
    if n >= 72:
        return NULL
    memcpy(text, token, n)
    text[n] = 0
    out.d = PyOS_string_to_double(text, &stop, NULL)
    if out.d == -1.0 and PyErr_Occurred():
        PyErr_Clear()
        return NULL
    if stop != text + n or out.d - out.d != 0:  # not all read, or +-inf: not plain
        return NULL
    return p


cdef inline cptr skip_ws(cptr p, cptr end) noexcept nogil:
    while p < end and (p[0] == 32 or p[0] == 10 or p[0] == 13 or p[0] == 9):
        p += 1
    return p


cdef cptr skip_string(cptr p, cptr end, bint* escaped) noexcept nogil:
    """p at a '"': past the closing quote, or NULL if it never closes."""
    p += 1
    while p < end:
        if p[0] == 34:
            return p + 1
        if p[0] == 92:
            escaped[0] = True
            p += 1
        p += 1
    return NULL


cdef cptr skip_value(cptr p, cptr end) noexcept nogil:
    """Past one JSON value at p (orjson validates what is skipped); NULL at the end."""
    cdef Py_ssize_t depth = 0
    cdef bint escaped = False
    if p >= end:
        return NULL
    if p[0] == 34:
        return skip_string(p, end, &escaped)
    if p[0] != 91 and p[0] != 123:  # a literal or number: up to the next delimiter
        while p < end and p[0] != 44 and p[0] != 93 and p[0] != 125 and p[0] != 32 and \
                p[0] != 10 and p[0] != 13 and p[0] != 9:
            p += 1
        return p
    while p < end:
        if p[0] == 34:
            p = skip_string(p, end, &escaped)
            if p == NULL:
                return NULL
            continue
        if p[0] == 91 or p[0] == 123:
            depth += 1
        elif p[0] == 93 or p[0] == 125:
            depth -= 1
            if depth == 0:
                return p + 1
        p += 1
    return NULL


@cython.final
@cython.auto_pickle(False)  # an unpickled one could claim more values than it has
cdef class JsonNumbers:
    """The plain numbers of one inputs[i].data, parsed from the body (see split_json_tensors).

    ``count`` leaves in ``shape`` (the nesting of the JSON lists); ``to_array`` gives them
    as a numpy array when numpy and the general path would give the very same one, else
    None; ``text()`` is the array as it was in the body, for the general path.
    """
    cdef object body
    cdef Py_ssize_t start, end
    cdef bytearray values  # count int64 (all_int) or double values
    cdef readonly Py_ssize_t count
    cdef int ndim
    cdef Py_ssize_t dims[MAX_NDIM]
    cdef bint all_int      # every token an integer: values are int64, else double
    cdef bint big_int      # some integer beyond +-2**53 (not exact as a double)

    def __dealloc__(self):
        give_back(self.values)  # not converted (the general path took over): reuse it

    @property
    def shape(self):
        return tuple(self.dims[i] for i in range(self.ndim))

    def text(self):
        """The array's bytes in the body (orjson.loads gives the general path's list)."""
        return memoryview(self.body)[self.start:self.end]

    def to_array(self, dtype, count):
        """A flat array of ``dtype`` (float32/64, int32/64) or None (see numbers_from_json)."""
        kind = _KINDS.get(dtype)
        if kind is None or type(count) is not int or count != self.count or self.values is None:
            return None
        cdef Py_ssize_t i, n = self.count
        cdef char* src = PyByteArray_AS_STRING(self.values)
        cdef int64_t* ints = <int64_t*>src
        cdef double* dbls = <double*>src
        cdef bint floats = kind == F4 or kind == F8
        if floats and self.big_int:
            return None
        if not floats and not self.all_int:
            return None  # floats for an integer tensor: the general path refuses them
        if kind == I4:
            for i in range(n):
                if ints[i] < -2147483648LL or ints[i] > 2147483647LL:
                    return None
        if floats and self.all_int:  # exact: |i| <= 2**53 (big_int is False)
            for i in range(n):
                dbls[i] = <double>ints[i]
        if kind == F8 or kind == I8:
            out, self.values = self.values, None  # handed over: no copy
            PyByteArray_Resize(out, n * 8)
            return _np.frombuffer(out, dtype)
        buf = PyByteArray_FromStringAndSize(NULL, n * 4)
        cdef float* f4 = <float*>PyByteArray_AS_STRING(buf)
        cdef int* i4 = <int*>f4
        if kind == F4:
            for i in range(n):
                f4[i] = <float>dbls[i]  # IEEE rounding, overflow to +-inf, as numpy casts
        else:
            for i in range(n):
                i4[i] = <int>ints[i]
        give_back(self.values)
        self.values = None
        return _np.frombuffer(buf, dtype)


# One spare values buffer, reused request after request (issue 18: RSS after large JSON
# tensors stays flat). Parsing is synchronous under the GIL and a buffer goes back as soon
# as its numbers are converted, so one is enough; a buffer handed to numpy is replaced.
cdef bytearray _spare = None
cdef Py_ssize_t SPARE_MAX = 64 * 1024 * 1024  # a larger one (a huge tensor) is let go


cdef bytearray take_scratch():
    global _spare
    buf = _spare if _spare is not None else bytearray()
    _spare = None
    return buf


cdef void give_back(bytearray buf) noexcept:
    global _spare
    if buf is not None and len(buf) <= SPARE_MAX and (
            _spare is None or len(buf) > len(_spare)):
        _spare = buf


cdef inline int store(JsonNumbers nums, Py_ssize_t* cap, Number* num) except -1:
    """Append one number to nums.values, growing it by doubling."""
    cdef Py_ssize_t i, n = nums.count
    cdef char* buf
    cdef int64_t v
    if n == cap[0]:
        cap[0] = 2 * cap[0] if cap[0] else 64
        PyByteArray_Resize(nums.values, cap[0] * 8)
    buf = PyByteArray_AS_STRING(nums.values)
    if num.is_int:
        v = num.i
        if v > <int64_t>EXACT_DOUBLE or v < -<int64_t>EXACT_DOUBLE:
            nums.big_int = True
        if nums.all_int:
            (<int64_t*>buf)[n] = v
        else:
            (<double*>buf)[n] = <double>v
    else:
        if nums.all_int:  # the first float token: what came before becomes double
            for i in range(n):
                (<double*>buf)[i] = <double>(<int64_t*>buf)[i]
            nums.all_int = False
        (<double*>buf)[n] = num.d
    nums.count = n + 1
    return 0


cdef Py_ssize_t parse_plain(cptr base, Py_ssize_t pos, Py_ssize_t size,
                            JsonNumbers nums) except -2:
    """Parse the regular nest of numbers at base[pos] ('[') into nums; the offset past it,
    or -1 when it is not plain (then nums is to be dropped)."""
    cdef cptr p = base + pos
    cdef cptr end = base + size
    cdef Py_ssize_t counts[MAX_NDIM]
    cdef Py_ssize_t cap
    cdef int level = 0, leaf = -1
    cdef Number num
    for level in range(MAX_NDIM):
        nums.dims[level] = -1
    level = 0
    nums.values = take_scratch()
    cap = len(nums.values) // 8
    nums.all_int = True
    counts[0] = 0
    p += 1
    while True:
        p = skip_ws(p, end)
        if p >= end:
            return -1
        if p[0] == 91:  # '[': one level down
            if level == leaf or level + 1 == MAX_NDIM:
                return -1  # a list among numbers, or deeper than numpy's 32
            counts[level] += 1
            level += 1
            counts[level] = 0
            p += 1
            continue
        if p[0] == 93:  # ']': this list is done
            if counts[level] == 0:
                return -1  # empty: the general path decides
            if nums.dims[level] < 0:  # the first list closed at a level sets its size
                nums.dims[level] = counts[level]
            elif counts[level] != nums.dims[level]:
                return -1  # ragged
            p += 1
            if level == 0:
                break
            level -= 1
        else:
            if leaf < 0:
                leaf = level
            elif level != leaf:
                return -1  # numbers at two depths
            while True:  # a run of numbers; "1,2" without spaces stays in this loop
                p = parse_number(p, end, &num)
                if p == NULL:
                    return -1
                counts[level] += 1
                store(nums, &cap, &num)
                if end - p > 1 and p[0] == 44 and (is_digit(p[1]) or p[1] == 45):
                    p += 1
                    continue
                break
        p = skip_ws(p, end)
        if p >= end:
            return -1
        if p[0] == 44:  # ','
            p += 1
            p = skip_ws(p, end)
            if p < end and p[0] == 93:
                return -1  # trailing comma: invalid JSON, orjson reports it
        elif p[0] != 93:
            return -1
    nums.ndim = leaf + 1
    return p - base


cdef inline bint key_is(cptr p, Py_ssize_t n, const char* word, Py_ssize_t wn) noexcept nogil:
    return n == wn and memcmp(p, word, n) == 0


cdef Py_ssize_t walk_input(object body, cptr base, Py_ssize_t pos, Py_ssize_t size,
                           Py_ssize_t index, list found) except -2:
    """One inputs[index] object at base[pos] ('{'); the offset past it, -1 to give up."""
    cdef cptr p = skip_ws(base + pos + 1, base + size)
    cdef cptr end = base + size
    cdef cptr key
    cdef bint escaped = False, seen_data = False
    cdef Py_ssize_t at
    cdef JsonNumbers nums
    if p < end and p[0] == 125:
        return p + 1 - base
    while True:
        if p >= end or p[0] != 34:
            return -1
        key = p + 1
        p = skip_string(p, end, &escaped)
        if p == NULL or escaped:
            return -1  # an escaped key may spell "data": orjson decides
        at = p - 1 - key
        p = skip_ws(p, end)
        if p >= end or p[0] != 58:  # ':'
            return -1
        p = skip_ws(p + 1, end)
        if key_is(key, at, "data", 4):
            if seen_data:
                return -1
            seen_data = True
            if p < end and p[0] == 91:
                nums = JsonNumbers.__new__(JsonNumbers)
                at = parse_plain(base, p - base, size, nums)
                if at >= 0:
                    nums.body, nums.start, nums.end = body, p - base, at
                    found.append((index, nums))
                    p = base + at
                else:
                    give_back(nums.values)
                    nums.values = None
                    p = skip_value(p, end)
            else:
                p = skip_value(p, end)
        else:
            p = skip_value(p, end)
        if p == NULL:
            return -1
        p = skip_ws(p, end)
        if p >= end:
            return -1
        if p[0] == 125:
            return p + 1 - base
        if p[0] != 44:
            return -1
        p = skip_ws(p + 1, end)


cdef Py_ssize_t walk_inputs(object body, cptr base, Py_ssize_t pos, Py_ssize_t size,
                            list found) except -2:
    """The inputs array at base[pos] ('['); the offset past it, -1 to give up."""
    cdef cptr end = base + size
    cdef cptr p = skip_ws(base + pos + 1, end)
    cdef Py_ssize_t index = 0, at
    if p < end and p[0] == 93:
        return p + 1 - base
    while True:
        if p >= end:
            return -1
        if p[0] == 123:
            at = walk_input(body, base, p - base, size, index, found)
            if at < 0:
                return -1
            p = base + at
        else:
            p = skip_value(p, end)
            if p == NULL:
                return -1
        p = skip_ws(p, end)
        if p >= end:
            return -1
        if p[0] == 93:
            return p + 1 - base
        if p[0] != 44:
            return -1
        p = skip_ws(p + 1, end)
        index += 1


def split_json_tensors(body):
    """A v2 request body's plain number arrays, parsed, and the rest (see above).

    Returns None, or ``(skeleton, found)``: ``skeleton`` the body with each found array
    replaced by ``null``, ``found`` a list of ``(input index, JsonNumbers)``.
    """
    cdef const unsigned char[::1] data = byte_view(body)
    cdef Py_ssize_t size = data.shape[0], at, total, n
    if size == 0:
        return None
    cdef cptr base = &data[0]
    cdef cptr end = base + size
    cdef cptr p = skip_ws(base, end)
    cdef cptr key
    cdef bint escaped = False, seen_inputs = False
    cdef list found = []
    if p >= end or p[0] != 123:
        return None
    p = skip_ws(p + 1, end)
    while True:
        if p >= end or p[0] != 34:
            return None
        key = p + 1
        p = skip_string(p, end, &escaped)
        if p == NULL or escaped:
            return None
        at = p - 1 - key
        p = skip_ws(p, end)
        if p >= end or p[0] != 58:
            return None
        p = skip_ws(p + 1, end)
        if key_is(key, at, "inputs", 6):
            if seen_inputs:
                return None
            seen_inputs = True
        if key_is(key, at, "inputs", 6) and p < end and p[0] == 91:
            at = walk_inputs(body, base, p - base, size, found)
            if at < 0:
                return None
            p = base + at
        else:
            p = skip_value(p, end)
            if p == NULL:
                return None
        p = skip_ws(p, end)
        if p >= end:
            return None
        if p[0] == 125:
            break
        if p[0] != 44:
            return None
        p = skip_ws(p + 1, end)
    if skip_ws(p + 1, end) != end or not found:
        return None
    total = size
    for _, nums in found:
        total -= (<JsonNumbers>nums).end - (<JsonNumbers>nums).start - 4
    skeleton = PyBytes_FromStringAndSize(NULL, total)
    cdef char* out = PyBytes_AS_STRING(skeleton)
    at = 0
    for _, nums in found:
        n = (<JsonNumbers>nums).start - at
        memcpy(out, base + at, n)
        memcpy(out + n, b"null", 4)
        out += n + 4
        at = (<JsonNumbers>nums).end
    memcpy(out, base + at, size - at)
    return skeleton, found
