#!/usr/bin/env python3
"""Parses Prometheus text (stdin) with the real prometheus_client parser and
prints it as JSON: {"families": [{"name", "type", "help", "samples":
[{"name", "labels", "value"}]}]}. Used by tests/metrics.rs. A text the
parser rejects makes it exit 1 with the parser's message."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    try:
        families = [
            {
                "name": f.name,
                "type": f.type,
                "help": f.documentation,
                "samples": [
                    {"name": s.name, "labels": dict(s.labels), "value": s.value}
                    for s in f.samples
                ],
            }
            for f in text_string_to_metric_families(text)
        ]
    except Exception as e:  # the parser raises ValueError and others
        print(f"parse_metrics: not Prometheus text: {e!r}", file=sys.stderr)
        return 1
    print(json.dumps({"families": families}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
