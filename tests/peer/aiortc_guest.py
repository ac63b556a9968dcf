#!/usr/bin/env python3
"""A third-party WebRTC peer for interop tests: aiortc joins a box as the guest.

usage: aiortc_guest.py HOST:PORT ROOM PIN SEND_WAV RECORD_WAV SECONDS

Pairs with the protocol (python-spake2 + the standard library), sends aiortc's own SDP
offer sealed, sends SEND_WAV as aiortc's Opus (stereo, no FEC), records what the box sends
to RECORD_WAV, texts the box and waits for the ack, then says bye. Prints a JSON report.
"""
import asyncio, base64, hashlib, hmac, json, struct, sys

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer, MediaRecorder
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from spake2 import SPAKE2_Symmetric

LABEL = b"intercom/v1"


async def send(w, obj):
    payload = json.dumps(obj, separators=(",", ":")).encode()
    w.write(struct.pack(">I", len(payload)) + payload)
    await w.drain()


async def recv(r):
    (n,) = struct.unpack(">I", await r.readexactly(4))
    return json.loads(await r.readexactly(n))


def hkdf(salt, ikm, info):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


class Sealed:
    def __init__(self, key):
        self.aead, self.seq = ChaCha20Poly1305(key), 0

    def seal(self, obj):
        nonce = b"\0" * 4 + struct.pack(">Q", self.seq)
        ct = self.aead.encrypt(nonce, json.dumps(obj).encode(), LABEL)
        frame = {"t": "sealed", "seq": self.seq, "ct": base64.b64encode(ct).decode()}
        self.seq += 1
        return frame

    def open(self, frame):
        assert frame["t"] == "sealed" and frame["seq"] == self.seq, frame
        nonce = b"\0" * 4 + struct.pack(">Q", self.seq)
        self.seq += 1
        return json.loads(self.aead.decrypt(nonce, base64.b64decode(frame["ct"]), LABEL))


async def main():
    where, room, pin, send_wav, record_wav, seconds = sys.argv[1:7]
    host, port = where.rsplit(":", 1)
    r, w = await asyncio.open_connection(host, int(port))
    s = SPAKE2_Symmetric(pin.encode(), idSymmetric=b"intercom/v1/" + room.encode())
    my_msg = s.start()
    await send(w, {"t": "pake", "v": 1, "room": room, "msg": base64.b64encode(my_msg).decode()})
    reply = await recv(r)
    host_msg = base64.b64decode(reply["msg"])
    k = s.finish(host_msg)
    t = hashlib.sha256(LABEL + room.encode() + host_msg + my_msg).digest()
    keys = {l: hkdf(t, k, l.encode()) for l in
            ["confirm guest", "confirm host", "seal guest->host", "seal host->guest"]}
    mac = hmac.new(keys["confirm guest"], b"confirm", hashlib.sha256).digest()
    await send(w, {"t": "confirm", "mac": base64.b64encode(mac).decode()})
    conf = await recv(r)
    assert conf["t"] == "confirm", conf
    out, inn = Sealed(keys["seal guest->host"]), Sealed(keys["seal host->guest"])

    pc = RTCPeerConnection()
    chat = pc.createDataChannel("chat")
    player = MediaPlayer(send_wav)
    pc.addTrack(player.audio)
    recorder = MediaRecorder(record_wav)
    acked = asyncio.Event()
    report = {"acked": False, "texts_from_box": []}

    @pc.on("track")
    def on_track(track):
        recorder.addTrack(track)

    @chat.on("message")
    def on_message(message):
        m = json.loads(message)
        if m.get("t") == "ack" and m.get("id") == 0:
            report["acked"] = True
            acked.set()
        elif m.get("t") == "msg":
            report["texts_from_box"].append(m["text"])
            chat.send(json.dumps({"t": "ack", "id": m["id"]}))

    @chat.on("open")
    def on_open():
        chat.send(json.dumps({"t": "msg", "id": 0, "text": "hello from aiortc"}))

    await pc.setLocalDescription(await pc.createOffer())
    await send(w, out.seal({"t": "offer", "sdp": pc.localDescription.sdp}))
    answer = inn.open(await recv(r))
    assert answer["t"] == "answer", answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    await recorder.start()
    await asyncio.wait_for(acked.wait(), 15)
    await asyncio.sleep(float(seconds))
    await send(w, out.seal({"t": "bye"}))
    await recorder.stop()
    await pc.close()
    w.close()
    report["state"] = pc.connectionState
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
