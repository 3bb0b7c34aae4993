#!/usr/bin/env python3
"""The Python msgpack floor: a Unix-socket server that answers each `[0, msgid, method, params]`
with a reply of a plugin server's shape on the connection's own thread (recv, decode, encode,
send; the same msgpack settings as edge/rpc_channel.py). Nothing can serve Kong's protocol from
Python for less; bench/listener.py measures listeners against it in the same run.

    floor_server.py SOCKET_PATH
"""

import os
import socket
import sys
import threading

import msgpack

REPLY = {"Data": {"Method": "kong.request.get_method", "Args": []}, "EventId": 1}


def serve(conn: socket.socket) -> None:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape")
    packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape")
    with conn:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            unpacker.feed(chunk)
            for _, msgid, _method, _params in unpacker:
                conn.sendall(packer.pack([1, msgid, None, REPLY]))


def main() -> None:
    path = sys.argv[1]
    if os.path.exists(path):
        os.remove(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(128)
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
