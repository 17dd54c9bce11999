#!/bin/sh
# The image's entry point: stylize-server with authentication on, unless a
# person turns it off.
#
#   --auth-token-file FILE or STYLIZE_AUTH_TOKEN_FILE=FILE: the tokens in FILE
#       (one `name:token` line per client; deploy/k8s mounts them from a Secret).
#   neither: a token is generated into STYLIZE_GENERATED_TOKEN_FILE
#       (/tmp/stylize/token, readable by the server's user only; kept across
#       restarts of the container), one bare token: the client "default". Read it with
#       `docker exec CONTAINER cat /tmp/stylize/token` and pass it to clients
#       (`stylize --token-file`, StyleTransferClient(token=...)).
#   STYLIZE_ALLOW_NO_AUTH=1: no authentication. Every process on a client's
#       host is then one client; only a job's secret keeps jobs apart (README).
#
# `exec`: the server is PID 1's process itself, so SIGTERM reaches it.
set -eu

for arg in "$@"; do
    case "$arg" in
        --auth-token-file | --auth-token-file=* | --help | -h | --version)
            exec stylize-server "$@" ;;
    esac
done
if [ -n "${STYLIZE_AUTH_TOKEN_FILE:-}" ] || [ "${STYLIZE_ALLOW_NO_AUTH:-0}" = "1" ]; then
    exec stylize-server "$@"
fi

file="${STYLIZE_GENERATED_TOKEN_FILE:-/tmp/stylize/token}"
umask 077
mkdir -p "$(dirname "$file")"
if [ ! -s "$file" ]; then
    python3 -c 'import secrets; print(secrets.token_hex(32))' >"$file.new"  # a bare token: client "default"
    mv "$file.new" "$file"
fi
echo "stylize: authentication is on with a generated token for the client \"default\"; read it with" \
    "\`docker exec <container> cat $file\`. Set STYLIZE_AUTH_TOKEN_FILE to use your own tokens," \
    "or STYLIZE_ALLOW_NO_AUTH=1 to run without authentication." >&2
exec stylize-server --auth-token-file "$file" "$@"
