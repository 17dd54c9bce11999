"""Protobuf <-> job values: the request's options and images read into a job
(admission), results and frames written out (output), and the one mapping from
errors to gRPC codes and google.rpc.Status details (status)."""
