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
#
# The numbers: _codec_json_number.pxi; what they are kept in: _codec_json_values.pxi.


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
