# Shared by scripts/fanout-bench.sh and scripts/fanout-memory.sh (sourced, not run).

# A free port below the ephemeral range: mosquitto binds WebSocket listeners on all addresses,
# which collides with client sockets of an earlier run still holding an ephemeral port.
free_port() {
  python3 - <<'PY'
import random, socket
for _ in range(1000):
    port = random.randrange(20000, 32000)
    try:
        for host in ("0.0.0.0", "127.0.0.1"):
            s = socket.socket(); s.bind((host, port)); s.close()
        print(port); break
    except OSError:
        pass
PY
}

# source_addrs N: 127.0.0.2,...,127.0.0.(N+1), the loopback addresses clients bind to.
source_addrs() {
  local out
  out=$(for i in $(seq 2 $(($1 + 1))); do printf '127.0.0.%s,' "$i"; done)
  echo "${out%,}"
}
