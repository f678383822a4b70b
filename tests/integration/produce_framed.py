#!/usr/bin/python3
"""produce_framed.py - produce every record of a framed file to a Kafka topic.

The independent producer of the integration tests: it shares no code with
funneld. A framed file (as written by `funnelctl gen --out`) is a sequence of
records, each "u32 big-endian key length, key bytes, u32 big-endian value
length, value bytes". Each record becomes one message with that key and
value (lz4, acks=all, idempotent). The script waits for every delivery
report and exits non-zero if any delivery failed or was not confirmed.

usage: produce_framed.py --brokers HOST:PORT --topic T --file PATH
                         [--partition-count N] [--timeout SECONDS]

--partition-count N fails (exit 1) unless the topic exists with exactly N
partitions, so a test cannot silently run against an auto-created topic.
Prints "produced N records to T" on success. Exit: 0 ok, 1 error, 2 usage.
"""
import argparse
import struct
import sys


def read_framed(path):
    """Yield (key, value) bytes pairs; raise ValueError on a truncated file."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError(f"{path}: truncated key length at byte {pos}")
        (klen,) = struct.unpack_from(">I", data, pos)
        if pos + 4 + klen + 4 > len(data):
            raise ValueError(f"{path}: truncated record at byte {pos}")
        key = data[pos + 4:pos + 4 + klen]
        pos += 4 + klen
        (vlen,) = struct.unpack_from(">I", data, pos)
        if pos + 4 + vlen > len(data):
            raise ValueError(f"{path}: truncated value at byte {pos}")
        yield key, data[pos + 4:pos + 4 + vlen]
        pos += 4 + vlen


def main():
    ap = argparse.ArgumentParser(description="Produce a framed file to a Kafka topic.")
    ap.add_argument("--brokers", required=True, help="bootstrap servers")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--file", required=True, help="framed file (- = stdin not supported)")
    ap.add_argument("--partition-count", type=int, default=None,
                    help="require the topic to have exactly this many partitions")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds to wait for outstanding deliveries (default 120)")
    args = ap.parse_args()

    from confluent_kafka import KafkaException, Producer

    conf = {"bootstrap.servers": args.brokers, "compression.codec": "lz4", "acks": "all",
            "enable.idempotence": True, "linger.ms": 20, "batch.num.messages": 10000,
            "queue.buffering.max.messages": 200000}
    p = Producer(conf)

    if args.partition_count is not None:
        try:
            md = p.list_topics(args.topic, timeout=10)
        except KafkaException as e:
            print(f"produce_framed: metadata of {args.topic}: {e}", file=sys.stderr)
            return 1
        t = md.topics.get(args.topic)
        if t is None or t.error is not None:
            print(f"produce_framed: topic {args.topic} not found: {t.error if t else ''}",
                  file=sys.stderr)
            return 1
        if len(t.partitions) != args.partition_count:
            print(f"produce_framed: topic {args.topic} has {len(t.partitions)} partitions, "
                  f"expected {args.partition_count}", file=sys.stderr)
            return 1

    errors = []
    delivered = [0]

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered[0] += 1

    n = 0
    try:
        for key, value in read_framed(args.file):
            while True:
                try:
                    p.produce(args.topic, value=value, key=key, on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.1)  # queue full: serve delivery reports, retry
            n += 1
            if n % 1000 == 0:
                p.poll(0)
            if errors:
                break
    except (OSError, ValueError) as e:
        print(f"produce_framed: {e}", file=sys.stderr)
        p.flush(args.timeout)
        return 1
    left = p.flush(args.timeout)
    if errors:
        print(f"produce_framed: {len(errors)} deliveries to {args.topic} failed, first: "
              f"{errors[0]}", file=sys.stderr)
        return 1
    if left or delivered[0] != n:
        print(f"produce_framed: {n - delivered[0]} of {n} records not confirmed in "
              f"{args.timeout:g} s", file=sys.stderr)
        return 1
    print(f"produced {n} records to {args.topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
