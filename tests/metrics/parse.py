"""Parse a /metrics answer with the Prometheus client library's parsers (the `prometheus_client`
package from PyPI), not with screenrec's own code, and print its samples as JSON.

Usage: parse.py < metrics.txt
The text must parse as OpenMetrics (its content type says so) and as the classic Prometheus
text format; the samples printed are the OpenMetrics parser's: a list of
{"name", "labels", "value", "type"}.
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic


def main():
    text = sys.stdin.read()
    # The classic parser takes the same text (it reads "# EOF" as a comment).
    classic_names = {s.name for f in classic(text) for s in f.samples}
    samples = []
    for family in openmetrics(text):
        for s in family.samples:
            samples.append({"name": s.name, "labels": s.labels, "value": s.value, "type": family.type})
    missing = {s["name"] for s in samples} - classic_names
    if missing:
        sys.exit(f"the classic parser did not read {sorted(missing)}")
    json.dump(samples, sys.stdout)


if __name__ == "__main__":
    main()
