"""gRPC front-end: KServe v2 ``GRPCInferenceService`` (with Triton's additions), TorchServe's
``InferenceAPIsService`` / ``ManagementAPIsService`` and ``grpc.health.v1``, served by one
``grpc.aio`` server on the process's own event loop, onto the same data plane as HTTP.
"""
