"""HTTP/JSON beside gRPC (`--http-port`): the same service, driven through a
call adapter (`call.HttpCall`), plus the static page at `/`."""
