#!/usr/bin/env python3
"""An independent intercom v1 peer for interop tests: python-spake2 for SPAKE2,
the standard library for the key schedule, `cryptography` for sealed frames.

usage: python_peer.py host PORTFILE ROOM PIN   (listens on 127.0.0.1, writes its port)
       python_peer.py guest HOST:PORT ROOM PIN
Completes the handshake, sends one sealed message, expects one sealed message back,
and prints a JSON line with the keys it derived (hex) and what it received.
"""
import base64, hashlib, hmac, json, socket, struct, sys

from spake2 import SPAKE2_Symmetric
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

LABEL = b"intercom/v1"


def send(sock, obj):
    payload = json.dumps(obj, separators=(",", ":")).encode()
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def recv(sock):
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise SystemExit("connection closed")
            buf += chunk
        return buf
    (n,) = struct.unpack(">I", exact(4))
    return json.loads(exact(n))


def hkdf(salt, ikm, info):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def schedule(room, k, host_msg, guest_msg):
    t = hashlib.sha256(LABEL + room.encode() + host_msg + guest_msg).digest()
    return {label: hkdf(t, k, label.encode()) for label in
            ["confirm guest", "confirm host", "seal guest->host", "seal host->guest"]}


def mac(key):
    return hmac.new(key, b"confirm", hashlib.sha256).digest()


def seal(key, seq, inner):
    ct = ChaCha20Poly1305(key).encrypt(b"\0" * 4 + struct.pack(">Q", seq), inner, LABEL)
    return {"t": "sealed", "seq": seq, "ct": base64.b64encode(ct).decode()}


def unseal(key, frame, seq):
    assert frame["t"] == "sealed" and frame["seq"] == seq, frame
    ct = base64.b64decode(frame["ct"])
    return ChaCha20Poly1305(key).decrypt(b"\0" * 4 + struct.pack(">Q", seq), ct, LABEL)


def main():
    role, where, room, pin = sys.argv[1:5]
    s = SPAKE2_Symmetric(pin.encode(), idSymmetric=b"intercom/v1/" + room.encode())
    my_msg = s.start()
    if role == "guest":
        host, port = where.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=10)
        send(sock, {"t": "pake", "v": 1, "room": room, "msg": base64.b64encode(my_msg).decode()})
        reply = recv(sock)
        assert reply["t"] == "pake" and reply["room"] == room, reply
        host_msg = base64.b64decode(reply["msg"])
        keys = schedule(room, s.finish(host_msg), host_msg, my_msg)
        send(sock, {"t": "confirm", "mac": base64.b64encode(mac(keys["confirm guest"])).decode()})
        conf = recv(sock)
        assert conf["t"] == "confirm", conf
        assert hmac.compare_digest(base64.b64decode(conf["mac"]), mac(keys["confirm host"]))
        send(sock, seal(keys["seal guest->host"], 0, b'{"t":"offer","sdp":"from python"}'))
        got = unseal(keys["seal host->guest"], recv(sock), 0)
    else:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with open(where, "w") as f:
            f.write(str(srv.getsockname()[1]))
        sock, _ = srv.accept()
        sock.settimeout(10)
        pake = recv(sock)
        assert pake["t"] == "pake" and pake["v"] == 1 and pake["room"] == room, pake
        guest_msg = base64.b64decode(pake["msg"])
        send(sock, {"t": "pake", "v": 1, "room": room, "msg": base64.b64encode(my_msg).decode()})
        keys = schedule(room, s.finish(guest_msg), my_msg, guest_msg)
        conf = recv(sock)
        assert hmac.compare_digest(base64.b64decode(conf["mac"]), mac(keys["confirm guest"]))
        send(sock, {"t": "confirm", "mac": base64.b64encode(mac(keys["confirm host"])).decode()})
        got = unseal(keys["seal guest->host"], recv(sock), 0)
        send(sock, seal(keys["seal host->guest"], 0, b'{"t":"answer","sdp":"from python"}'))
    print(json.dumps({"keys": {k: v.hex() for k, v in keys.items()}, "received": got.decode()}))
    sock.close()


if __name__ == "__main__":
    main()
