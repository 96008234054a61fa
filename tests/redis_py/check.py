"""Drives `ringraft kv` nodes with redis-py's default client (RESP3 since redis-py 8).

Usage: check.py HOST:PORT...  Prints one `ok <check> <address>` line per passed check and
`all checks passed` at the end; the first failed check raises, and the exit status is 1.
"""

import sys
import time

import redis


def check(name, address, got, expected):
    if got != expected:
        raise AssertionError(f"{name} via {address}: got {got!r}, expected {expected!r}")
    print(f"ok {name} {address}", flush=True)


def run(index, address):
    host, port = address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port), socket_timeout=20)
    key = lambda name: f"py{index}:{name}"

    connection = client.connection_pool.get_connection()
    proto = connection.handshake_metadata.get(b"proto", connection.handshake_metadata.get("proto"))
    client.connection_pool.release(connection)
    check("hello-protocol-3", address, proto, 3)
    hello = client.execute_command("HELLO")
    check("hello-map", address, (hello[b"server"], hello[b"mode"]), (b"ringraft", b"standalone"))

    check("set", address, client.set(key("a"), "1"), True)
    check("get", address, client.get(key("a")), b"1")
    check("get-missing", address, client.get(key("none")), None)
    check("incr", address, client.incr(key("a")), 2)
    check("incrby", address, client.incrby(key("a"), 40), 42)
    check("mget", address, client.mget([key("a"), key("none")]), [b"42", None])
    check("set-nx-refused", address, client.set(key("a"), "x", nx=True), None)
    check("delete", address, client.delete(key("a"), key("none")), 1)
    check("config-get", address, client.config_get("databases"), {"databases": "1"})
    check("info", address, "group0" in str(client.info()), True)

    pipe = client.pipeline(transaction=False)
    pipe.set(key("p"), "v", ex=1000)
    for _ in range(10):
        pipe.incr(key("n"))
    pipe.get(key("n"))
    pipe.get(key("none"))
    check("pipeline", address, pipe.execute(), [True] + list(range(1, 11)) + [b"10", None])

    check("ttl-ex", address, 0 < client.ttl(key("p")) <= 1000, True)
    check("ttl-no-deadline", address, client.ttl(key("n")), -1)
    check("ttl-missing", address, client.ttl(key("none")), -2)
    check("expire", address, client.expire(key("n"), 500), True)
    check("expire-nx-refused", address, client.expire(key("n"), 100, nx=True), False)
    check("expire-gt-refused", address, client.expire(key("n"), 100, gt=True), False)
    check("expire-lt", address, client.expire(key("n"), 100, lt=True), True)
    check("pexpire-xx", address, client.pexpire(key("n"), 200_000, xx=True), True)
    check("pttl", address, 100_000 < client.pttl(key("n")) <= 200_000, True)
    check("persist", address, client.persist(key("n")), True)
    check("persist-again", address, client.persist(key("n")), False)
    check("pttl-no-deadline", address, client.pttl(key("n")), -1)
    check("expire-missing", address, client.expire(key("none"), 10), False)

    client.set(key("short"), "v", px=200)
    time.sleep(0.4)
    check("expired-is-missing", address, (client.get(key("short")), client.exists(key("short"))), (None, 0))
    check("expire-in-the-past-deletes", address, (client.set(key("d"), "v"), client.expire(key("d"), -1), client.get(key("d"))), (True, True, None))
    try:
        client.incr(key("p"))
        raise AssertionError("INCR of a non-number succeeded")
    except redis.ResponseError as error:
        check("error-reply", address, "not an integer" in str(error), True)
    client.close()


def main(addresses):
    print(f"redis-py {redis.__version__}", flush=True)
    for index, address in enumerate(addresses):
        run(index, address)
    print("all checks passed", flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as error:
        print(f"FAILED: {type(error).__name__}: {error}", flush=True)
        sys.exit(1)
