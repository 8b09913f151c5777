#!/usr/bin/env python3
"""Initialisation time of the Lambda functions: from process start to the first request for an
event (`GET /2018-06-01/runtime/invocation/next` on the Runtime API), which is when a function is
ready. Each bootstrap from target/lambda/*/bootstrap.zip runs against a stand-in Runtime API and
the real Redis, S3 (LocalStack) and SQS endpoints of the environment (scripts/services), several
times; the baseline is a process that does nothing but that one request (curl), measured in the
same run. Writes bench/results/lambda.json.

Usage: bench/lambda_init.py [RUNS]   (needs SCREENREC_TEST_REDIS_URL and SCREENREC_TEST_LOCALSTACK)
"""

import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_MS = 50
FUNCTION_ZIP_GOAL = 8 * 1000 * 1000


class RuntimeApi(http.server.ThreadingHTTPServer):
    """Records when the first `next` request arrives, and never answers it."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.ready = threading.Event()
        self.ready_at = 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next") and not self.server.ready.is_set():
            self.server.ready_at = time.monotonic_ns()
            self.server.ready.set()
        time.sleep(5)  # hold the request: the function waits for an event until it is killed

    def log_message(self, *args):
        pass


def measure(command, env, runs):
    times = []
    for _ in range(runs):
        api = RuntimeApi()
        threading.Thread(target=api.serve_forever, daemon=True).start()
        address = f"127.0.0.1:{api.server_address[1]}"
        run_env = dict(env, AWS_LAMBDA_RUNTIME_API=address)
        cmd = [c.replace("{runtime}", address) for c in command]
        start = time.monotonic_ns()
        proc = subprocess.Popen(cmd, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ok = api.ready.wait(10)
        proc.kill()
        _, err = proc.communicate()
        api.shutdown()
        api.server_close()
        if not ok:
            sys.exit(f"{command[0]} never asked for an event:\n{err.decode(errors='replace')}")
        times.append((api.ready_at - start) / 1e6)
    times.sort()
    return {
        "runs": runs,
        "medianMs": round(statistics.median(times), 2),
        "p90Ms": round(times[int(0.9 * (len(times) - 1))], 2),
        "maxMs": round(times[-1], 2),
    }


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    redis = os.environ["SCREENREC_TEST_REDIS_URL"]
    localstack = os.environ["SCREENREC_TEST_LOCALSTACK"]
    tools = os.environ.get("SCREENREC_TOOLS", "/opt/screenrec-tools")
    base = {
        "PATH": os.environ["PATH"],
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "LOG_FORMAT": "json",
        "STORAGE": "s3",
        "S3_BUCKET": "bench-lambda-init",
        "S3_ENDPOINT": localstack,
        "S3_FORCE_PATH_STYLE": "true",
        "REDIS_URL": redis,
        "REDIS_PREFIX": "bench-init:",
        "MERGE_QUEUE_URL": f"{localstack}/queue/us-east-1/000000000000/bench",
        "SQS_ENDPOINT": localstack,
        "APIGW_MANAGEMENT_ENDPOINT": "http://127.0.0.1:9",
    }
    results = {
        "benchmark": "lambda-init",
        "goal": f"function zip <= 8 MB, init <= {GOAL_MS} ms (process start to first event request)",
        "cores": os.cpu_count(),
        "note": "bootstraps run here, not on Lambda, against local Redis and LocalStack; "
        "the baseline is curl making the one Runtime API request",
        "baselineCurl": measure(
            ["curl", "-s", "-o", "/dev/null", "http://{runtime}/2018-06-01/runtime/invocation/next"],
            base,
            runs,
        ),
        "functions": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for fn in ["api", "ws", "merge"]:
            zip_path = ROOT / "target" / "lambda" / fn / "bootstrap.zip"
            with zipfile.ZipFile(zip_path) as z:
                z.extract("bootstrap", Path(tmp) / fn)
            bootstrap = Path(tmp) / fn / "bootstrap"
            bootstrap.chmod(0o755)
            env = dict(base, AWS_LAMBDA_FUNCTION_NAME=f"screenrec-{fn}")
            if fn == "merge":
                env.update(FFMPEG_PATH=f"{tools}/ffmpeg/ffmpeg", MERGE_WORK_DIR=tmp)
            entry = measure([str(bootstrap)], env, runs)
            entry["zipBytes"] = zip_path.stat().st_size
            entry["zipWithinGoal"] = entry["zipBytes"] <= FUNCTION_ZIP_GOAL
            entry["initWithinGoal"] = entry["p90Ms"] <= GOAL_MS
            results["functions"][fn] = entry
    layer = ROOT / "target" / "lambda" / "ffmpeg-layer.zip"
    results["ffmpegLayerZipBytes"] = layer.stat().st_size
    out = ROOT / "bench" / "results" / "lambda.json"
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
