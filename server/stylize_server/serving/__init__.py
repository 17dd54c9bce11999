"""The pod: the grpc.aio service, auth, open-call limits, the scheduler and its
fair queue, jobs and their streams, kept results, metrics, logs and the
server's lifecycle. It sees the engine only through `job.port.EnginePort`."""
