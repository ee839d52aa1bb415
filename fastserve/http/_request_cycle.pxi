# One request's state in C fields (included in _protocol.pyx): cycle.py's twin.


cdef class RequestCycle:
    """fastserve.http.cycle.RequestCycle with C fields (same names, same meaning)."""

    cdef public object phase, method, url, headers, body, request, canned
    cdef public double started
    cdef public Py_ssize_t header_bytes, chunk_bytes, body_pos, discarded
    cdef public bint direct, keep_alive, http10, upgrade

    def __init__(self, double started):
        self.phase = HEADERS
        self.started = started
        self.method = b""
        self.url = b""
        self.headers = {}
        self.body = None
        self.keep_alive = True

    @classmethod
    def answer_only(cls, request, response, double started):
        cdef RequestCycle cycle = cls(started)
        cycle.phase = DONE
        cycle.keep_alive = False
        cycle.request = request
        cycle.canned = response
        return cycle

    cpdef bint declares_body(self):
        cdef dict headers = self.headers
        return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"


cdef RequestCycle _new_cycle(double started):
    """RequestCycle(started) without a Python-level __init__ call (one per request)."""
    cdef RequestCycle cycle = RequestCycle.__new__(RequestCycle)
    cycle.phase = HEADERS
    cycle.started = started
    cycle.method = b""
    cycle.url = b""
    cycle.headers = {}
    cycle.keep_alive = True
    return cycle
