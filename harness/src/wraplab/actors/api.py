"""One HTTP request to the server's API, from inside the lab, as the calling user.

    python3 -m wraplab.actors.api METHOD PATH [--api unix:SOCKET|tcp:HOST:PORT]
                                  [--body JSON] [--timeout S]

Prints ``{"status": int | null, "body": <parsed JSON, else text>, "error": null | errno
name, "peer": {"pid", "uid", "gid"} | null}`` (``peer``: SO_PEERCRED of the server for unix).
Exit 0 when a response arrived (any status), 1 when none did.
"""

import argparse
import http.client
import json

from wraplab.actors._common import (
    UnixHTTPConnection,
    api_connection,
    emit,
    errno_name,
    peercred,
)

DEFAULT_API = "unix:/run/wrapref/api.sock"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="api", description=__doc__.splitlines()[0])
    parser.add_argument("method")
    parser.add_argument("path")
    parser.add_argument("--api", default=DEFAULT_API)
    parser.add_argument("--body", help="request body (JSON text)")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    conn = api_connection(args.api, args.timeout)
    out = {"status": None, "body": None, "error": None, "peer": None}
    headers = {"Connection": "close"}
    body = None
    if args.body is not None:
        body = args.body.encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.connect()
        if isinstance(conn, UnixHTTPConnection):
            pid, uid, gid = peercred(conn.sock)
            out["peer"] = {"pid": pid, "uid": uid, "gid": gid}
        conn.request(args.method.upper(), args.path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        out["status"] = resp.status
        text = raw.decode("utf-8", "replace")
        try:
            out["body"] = json.loads(text) if text else None
        except ValueError:
            out["body"] = text
    except (OSError, http.client.HTTPException) as exc:
        out["error"] = errno_name(exc) if isinstance(exc, OSError) else type(exc).__name__
        emit(out, 1)
    finally:
        conn.close()
    emit(out)


if __name__ == "__main__":
    main()
