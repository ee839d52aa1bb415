# The response writer of _protocol.pyx (included there): writer.write_response in C.

cdef time_t _date_second = 0
cdef bytes _date = b""


cdef inline bytes _date_line(state):
    """state.date_header(), asked again only when the second changes (as it formats)."""
    global _date_second, _date
    cdef time_t now = c_time(NULL)
    if now != _date_second:
        _date = state.date_header()
        _date_second = now
    return _date

cdef _write_response(transport, request, response, bint keep_alive, bint http10, bytes date):
    """writer.write_response."""
    body = response.body
    buffers = response.buffers
    extra = b""
    cdef Py_ssize_t length
    accept = request.headers.get(b"accept-encoding")
    if accept is not None and (body or buffers):
        body, buffers, extra = encode_body(accept, body, buffers)
    length = len(body)
    if buffers:
        for b in buffers:
            length += memoryview(b).nbytes
    headers = response.headers
    if headers:
        extra += b"".join([name + b": " + value + b"\r\n" for name, value in headers])
    if not keep_alive:
        extra += b"connection: close\r\n"
    elif http10:
        extra += b"connection: keep-alive\r\n"
    ctype = response.content_type
    if ctype:
        head = HEAD_FORMAT % (STATUS[response.status], date, ctype, length, extra)
    else:  # no Content-Type header (writer.py: a TorchServe handler's untyped answer)
        head = HEAD_UNTYPED % (STATUS[response.status], date, length, extra)
    if request.method == "HEAD":
        transport.write(head)
        return
    transport.write(head + body)
    if buffers:
        transport.writelines(buffers)
