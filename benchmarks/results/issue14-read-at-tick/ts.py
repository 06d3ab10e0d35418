# Does a TCP recvmsg of one frame get that frame's own kernel RX timestamp when several
# frames arrived (as separate segments, at different times) before the read?
import socket, struct, time, threading, sys
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
GAP = float(sys.argv[1]) if len(sys.argv) > 1 else 200e-6
N = 5
L = socket.socket(); L.bind(("127.0.0.1", 0)); L.listen()
rx = socket.create_connection(L.getsockname())
tx, _ = L.accept()
tx.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
FR = 40
def rt():
    return time.clock_gettime(time.CLOCK_REALTIME)
for trial in range(3):
    sent = []
    for i in range(N):
        sent.append(rt()); tx.send(bytes([i]) * FR)
        t = time.perf_counter()
        while time.perf_counter() - t < GAP: pass
    time.sleep(0.002)
    print(f"trial {trial}, gap {GAP*1e6:.0f} us")
    for i in range(N):
        data, anc, flags, _ = rx.recvmsg(FR, socket.CMSG_SPACE(16))
        ts = None
        for lvl, typ, d in anc:
            if lvl == socket.SOL_SOCKET and typ == SCM_TIMESTAMPNS:
                s, ns = struct.unpack("qq", d[:16]); ts = s + ns / 1e9
        print(f"  frame {data[0]} len {len(data)}: ts - sent = {(ts - sent[i])*1e6:8.1f} us")
