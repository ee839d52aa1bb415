# The JSON number parser of the v2 JSON tensor path (included by _codec.pyx, before
# _codec_json_values.pxi and _codec_json.pxi, which walk the body and keep the values).

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
