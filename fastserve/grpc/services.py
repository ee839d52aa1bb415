"""Registering a servicer from its service descriptor, with requests that fail to parse
answered INVALID_ARGUMENT (grpc's own deserializer failure would be INTERNAL)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from ..errors import InvalidInputError

_HANDLERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class Malformed:
    """Stands in for a request message whose bytes did not parse."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def check(request: Any) -> None:
    """Raise INVALID_ARGUMENT for a request that did not parse."""
    if type(request) is Malformed:
        raise InvalidInputError(request.message)


def _parser(cls: Any) -> Any:
    parse = cls.FromString
    name = cls.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return Malformed(f"the request is not a valid {name} message: {exc}")

    return deserialize


def _unimplemented(what: str) -> Any:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{what} is not offered by fastserve")

    return refuse


def add_service(server: grpc.aio.Server, servicer: Any, service: Any) -> None:
    """Serve every method of ``service`` (a ServiceDescriptor) with ``servicer``'s own;
    those named in its ``SERIALIZED`` return (or yield) serialized messages themselves,
    those in its ``PARSERS`` get requests parsed by that function."""
    handlers = {}
    for method in service.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        make = _HANDLERS[(method.client_streaming, method.server_streaming)]
        implementation = getattr(servicer, method.name, None)
        if implementation is None:
            if method.client_streaming or method.server_streaming:
                continue  # grpc answers UNIMPLEMENTED itself
            implementation = _unimplemented(f"{service.full_name}/{method.name}")
        serialized = method.name in getattr(servicer, "SERIALIZED", ())
        parse = getattr(servicer, "PARSERS", {}).get(method.name) or _parser(request_cls)
        handlers[method.name] = make(implementation,
                                     request_deserializer=parse,
                                     response_serializer=None if serialized
                                     else response_cls.SerializeToString)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),))
