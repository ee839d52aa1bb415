# The values parsed from one inputs[i].data and their reused buffer (included by
# _codec.pyx; _codec_json.pxi fills them).


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
