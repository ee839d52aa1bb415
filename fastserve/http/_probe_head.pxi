# Recognising a plain GET of a probe route in the bytes read (included in _protocol.pyx;
# fastserve/http/probes.py says what is answered this way and why it is the same answer).

from libc.string cimport memcmp

cdef unsigned char TCHAR[256]  # RFC 9110 token characters: a header name
cdef bytes _TOKEN = (b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                     b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
cdef const unsigned char* _token = _TOKEN
cdef Py_ssize_t _i
for _i in range(len(_TOKEN)):
    TCHAR[_token[_i]] = 1


cdef enum HeaderKind:
    ORDINARY = 0
    DIFFERS = 1  # the ordinary path might answer otherwise, or httptools reads it itself
    CONNECTION = 2
    ACCEPT_ENCODING = 3


cdef inline int _lower_is(const unsigned char* p, Py_ssize_t n, const char* word,
                          Py_ssize_t wn) noexcept nogil:
    """p[:n] is word (lower case ASCII), ignoring the case of p."""
    cdef Py_ssize_t i
    if n != wn:
        return False
    for i in range(n):
        if (p[i] | 0x20 if 0x41 <= p[i] <= 0x5A else p[i]) != <unsigned char>word[i]:
            return False
    return True


cdef inline HeaderKind _header_kind(const unsigned char* name, Py_ssize_t n) noexcept nogil:
    if n < 6 or n > 17:
        return ORDINARY
    if _lower_is(name, n, b"connection", 10):
        return CONNECTION
    if _lower_is(name, n, b"accept-encoding", 15):
        return ACCEPT_ENCODING
    if (_lower_is(name, n, b"expect", 6) or _lower_is(name, n, b"upgrade", 7)
            or _lower_is(name, n, b"content-length", 14)
            or _lower_is(name, n, b"proxy-connection", 16)
            or _lower_is(name, n, b"content-encoding", 16)
            or _lower_is(name, n, b"transfer-encoding", 17)):
        return DIFFERS
    return ORDINARY


cdef Py_ssize_t _plain_get_head(const unsigned char* p, Py_ssize_t n, Py_ssize_t limit,
                                Py_ssize_t* url_len, Py_ssize_t* accept_at,
                                Py_ssize_t* accept_len) noexcept nogil:
    """The length of the plain GET request head that starts at p, else 0.

    Accepted, strictly (httptools accepts all of it; anything else is left to it):
        "GET " url " HTTP/1.1" CRLF *( token ":" *( VCHAR / SP / HTAB ) CRLF ) CRLF
    url: visible ASCII; no header of kind DIFFERS; Connection only as "keep-alive" (what
    HTTP/1.1 means anyway); at most one Accept-Encoding, its value (less the blanks around
    it) at accept_at (-1: none); the head within ``limit`` bytes and its URL and header
    lines, counted as on_url/on_header count them, too.
    """
    cdef Py_ssize_t i = 4, name, value, stop, counted
    cdef unsigned char c
    cdef HeaderKind kind
    accept_at[0] = -1
    accept_len[0] = 0
    if n > limit:
        n = limit
    if n < 18 or memcmp(p, b"GET /", 5) != 0:
        return 0
    while i < n and p[i] != 0x20:
        c = p[i]
        if c < 0x21 or c > 0x7E:
            return 0
        i += 1
    url_len[0] = i - 4
    if i + 11 > n or memcmp(p + i, b" HTTP/1.1\r\n", 11) != 0:
        return 0
    counted = i - 4
    i += 11
    while True:
        if i + 2 > n:
            return 0
        if p[i] == 0x0D:
            if p[i + 1] != 0x0A:
                return 0
            i += 2
            break
        name = i
        while i < n and TCHAR[p[i]]:
            i += 1
        if i == name or i >= n or p[i] != 0x3A:  # ':'
            return 0
        kind = _header_kind(p + name, i - name)
        if kind == DIFFERS:
            return 0
        counted += i - name
        i += 1
        value = i
        while i < n and (0x20 <= p[i] <= 0x7E or p[i] == 0x09):
            i += 1
        if i + 2 > n or p[i] != 0x0D or p[i + 1] != 0x0A:
            return 0
        counted += i - value + 4
        stop = i
        while value < stop and (p[value] == 0x20 or p[value] == 0x09):
            value += 1
        while stop > value and (p[stop - 1] == 0x20 or p[stop - 1] == 0x09):
            stop -= 1
        if kind == CONNECTION and not _lower_is(p + value, stop - value, b"keep-alive", 10):
            return 0
        if kind == ACCEPT_ENCODING:
            if accept_at[0] >= 0:
                return 0  # repeated: the ordinary path joins the values
            accept_at[0] = value
            accept_len[0] = stop - value
        i += 2
    if counted > limit:
        return 0
    return i


cdef Py_ssize_t _answer_probes(HttpCore conn, const unsigned char* p, Py_ssize_t n) except -1:
    """Answer the plain GETs of probe routes at the start of p (see above) while
    nothing else is read or answered on this connection; the bytes they took."""
    cdef Py_ssize_t done = 0, head, url_len = 0, accept_at, accept_len
    cycle = conn.cycle
    if (conn.closed or conn.running is not None or conn.pipeline
            or (cycle is not None and (<RequestCycle>cycle).phase is not DONE)
            or conn.state.draining):
        return 0
    while done < n and not conn.closed:
        head = _plain_get_head(p + done, n - done, conn.max_header_bytes, &url_len,
                               &accept_at, &accept_len)
        if head == 0:
            break
        url = PyBytes_FromStringAndSize(<const char*>p + done + 4, url_len)
        if accept_at >= 0:  # probes.py: the answer as that Accept-Encoding gets it
            key = url + b" " + PyBytes_FromStringAndSize(<const char*>p + done + accept_at,
                                                         accept_len)
        else:
            key = url
        answer = (<dict>conn._probe_answers).get(key)
        if answer is None:
            if url not in <dict>conn._probe_handlers:
                break
            answer = conn._probes.answer(key)
            if answer is None:
                break
        conn.transport.write(answer)
        conn.probes_answered += 1
        done += head
    if done:
        conn.last_activity = monotonic()
    return done
