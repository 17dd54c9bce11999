"""The stylize API as Python: the stubs generated from proto/stylize/v1 (`v1`),
the reasons read from its enums (`reasons`, generated), and the option schema
read from the request's descriptor (`schema`). The server and the client both
install this package; neither copies any of it."""
