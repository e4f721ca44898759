"""`python -m chicago_taxi.streaming drain|pending`: the micro-batch from a shell."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from chicago_taxi.core.config import DEFAULT_STREAM_GROUP
from chicago_taxi.ingest.topics import BrokerUnavailable
from chicago_taxi.streaming.batch import drain, process_pending, scorer_partitions
from chicago_taxi.streaming.kafka_io import CommitFailed, parse_partitions, pending_messages
from chicago_taxi.streaming.publisher import PublishFailed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chicago_taxi.streaming", description="Score what is pending on taxi-raw-data (see chicago_taxi.streaming.batch)."
    )
    parser.add_argument("command", choices=["drain", "pending"])
    parser.add_argument("--bootstrap", default=None, help="broker address (default $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    parser.add_argument("--group", default=None, help=f"consumer group (default $TAXI_STREAM_GROUP or {DEFAULT_STREAM_GROUP})")
    parser.add_argument("--max-messages", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=1.0)
    parser.add_argument("--until-empty", action="store_true", help="repeat until nothing arrived for --linger seconds")
    parser.add_argument("--partitions", type=parse_partitions, default=None, help="only these partitions of taxi-raw-data, e.g. 0,2 (default all)")
    parser.add_argument(
        "--scorer", default=None, help="K/N: scorer K (0-based) of N side by side, on partitions p with p mod N == K (instead of --partitions)"
    )
    parser.add_argument("--linger", type=float, default=0.0, help="with --until-empty: seconds to wait for more messages (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    try:
        partitions = args.partitions
        if args.scorer:
            k, _, n = args.scorer.partition("/")
            partitions = scorer_partitions(int(k), int(n), args.bootstrap)
            logging.getLogger(__name__).info("scorer %s: partitions %s", args.scorer, partitions)
        if args.command == "pending":
            print(json.dumps(pending_messages(args.bootstrap, args.group)))
            return 0
        if args.until_empty:
            print(
                json.dumps(
                    drain(
                        bootstrap=args.bootstrap,
                        group=args.group,
                        max_messages=args.max_messages,
                        idle_seconds=args.idle_seconds,
                        linger_seconds=args.linger,
                        partitions=partitions,
                    )
                )
            )
        else:
            result = process_pending(
                bootstrap=args.bootstrap, group=args.group, max_messages=args.max_messages, idle_seconds=args.idle_seconds, partitions=partitions
            )
            print(json.dumps(result.as_dict()))
        return 0
    except (BrokerUnavailable, PublishFailed, CommitFailed, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
