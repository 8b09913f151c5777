"""Static tests of the compose files CI cannot run (no Docker engine): infra/docker-compose.yml
(MinIO, Redis, three screenrec instances behind nginx) and localstack/docker-compose.yml
(LocalStack S3 + SQS with the init hook, Redis).

They parse each file with PyYAML and check the services, the wiring between them (endpoints,
ports, bucket, dependencies, health checks), Redis's durability settings, the instances'
graceful stop, and that every file they mount or build from is in the repository. Run from the repository root (terraform/check.sh does, with its venv):

    /opt/screenrec-tools/checkov/bin/python -m unittest discover -s infra/tests -v
"""

import os
import re
import unittest
from urllib.parse import urlparse

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
INFRA = os.path.join(ROOT, "infra")
LOCALSTACK = os.path.join(ROOT, "localstack")

INSTANCES = ("screenrec-1", "screenrec-2", "screenrec-3")


def load(path):
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), f"{path}: no services"
    return doc


def env(service):
    """A service's environment as a dict, from either the mapping or the list form."""
    e = service.get("environment", {})
    if isinstance(e, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in e)
    return {k: None if v is None else str(v) for k, v in e.items()}


def published(service):
    """{container port: host port} of a service's short-syntax port mappings."""
    out = {}
    for p in service.get("ports", []):
        parts = str(p).split(":")
        # "container", "host:container" or "ip:host:container"
        out[int(parts[-1].split("/")[0])] = int(parts[-2]) if len(parts) >= 2 else None
    return out


def depends(service):
    """{service: condition} of depends_on, list form counting as service_started."""
    d = service.get("depends_on", {})
    if isinstance(d, list):
        return {name: "service_started" for name in d}
    return {name: (v or {}).get("condition", "service_started") for name, v in d.items()}


def bind_mounts(service):
    """(source, target) of the bind mounts with a relative source (named volumes excluded)."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out.append((v["source"], v["target"]))
            continue
        source, target = str(v).split(":")[:2]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


def duration_secs(value):
    """Seconds in a compose duration ("40s", "1m30s", "1h", "500ms"); a bare number is seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(value))
    assert parts and "".join(n + u for n, u in parts) == str(value), f"not a duration: {value!r}"
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * unit[u] for n, u in parts)


def flags(command):
    """{--flag: value} of a command given as a list of words."""
    words = [str(w) for w in command]
    return {w: words[i + 1] if i + 1 < len(words) else None for i, w in enumerate(words) if w.startswith("--")}


def health_test(service):
    test = service.get("healthcheck", {}).get("test")
    if isinstance(test, list):
        return " ".join(str(t) for t in test)
    return test or ""


class ComposeChecks(unittest.TestCase):
    """Checks both files share."""

    path = None

    @classmethod
    def setUpClass(cls):
        cls.doc = load(cls.path)
        cls.services = cls.doc["services"]
        cls.dir = os.path.dirname(cls.path)

    def assert_mounts_exist(self):
        for name, service in self.services.items():
            for source, target in bind_mounts(service):
                with self.subTest(service=name, mount=source):
                    self.assertTrue(source.startswith("."), f"{name}: absolute host path {source}")
                    self.assertTrue(
                        os.path.exists(os.path.normpath(os.path.join(self.dir, source))),
                        f"{name} mounts {source}, which is not in the repository",
                    )
                    self.assertTrue(target.startswith("/"), target)

    def assert_images_pinned(self):
        for name, service in self.services.items():
            if "image" in service:
                image = service["image"]
                with self.subTest(service=name):
                    self.assertRegex(image, r"^[a-z0-9./-]+:[\w.-]+$", f"{name}: image {image!r}")
                    self.assertNotRegex(image, r":latest$", f"{name}: image {image!r}")

    def assert_depends_on_known_services(self):
        for name, service in self.services.items():
            for dep, condition in depends(service).items():
                self.assertIn(dep, self.services, f"{name} depends on unknown {dep}")
                if condition == "service_healthy":
                    self.assertTrue(health_test(self.services[dep]), f"{name} waits for {dep}'s health, which has no check")


class InfraCompose(ComposeChecks):
    path = os.path.join(INFRA, "docker-compose.yml")

    def test_services(self):
        for name in ("minio", "redis", "create-bucket", "nginx", *INSTANCES):
            self.assertIn(name, self.services)
        built = [n for n, s in self.services.items() if "build" in s]
        self.assertEqual(sorted(built), sorted(INSTANCES), "the screenrec instances are the built services")

    def test_instances_build_from_the_dockerfile(self):
        for name in INSTANCES:
            with self.subTest(instance=name):
                build = self.services[name]["build"]
                context = os.path.normpath(os.path.join(self.dir, build["context"]))
                self.assertEqual(context, ROOT, "the image builds from the repository root")
                self.assertTrue(os.path.isfile(os.path.join(context, build["dockerfile"])), build["dockerfile"])

    def test_instances_use_redis_and_minio(self):
        redis_port = 6379
        minio_port = 9000
        self.assertIn(minio_port, published(self.services["minio"]))
        bucket_job = " ".join(self.services["create-bucket"]["command"])
        for name in INSTANCES:
            with self.subTest(instance=name):
                e = env(self.services[name])
                self.assertEqual(e.get("STORAGE"), "s3")
                redis = urlparse(e["REDIS_URL"])
                self.assertEqual((redis.scheme, redis.hostname, redis.port), ("redis", "redis", redis_port))
                s3 = urlparse(e["S3_ENDPOINT"])
                self.assertEqual((s3.scheme, s3.hostname, s3.port), ("http", "minio", minio_port))
                self.assertEqual(e.get("S3_FORCE_PATH_STYLE"), "true", "MinIO needs path-style requests")
                self.assertIn(f"local/{e['S3_BUCKET']}", bucket_job, "the bucket the job creates")
                self.assertIn("http://minio:9000", bucket_job)
                self.assertTrue(e.get("AWS_ACCESS_KEY_ID") and e.get("AWS_SECRET_ACCESS_KEY"))
                self.assertEqual(e["AWS_ACCESS_KEY_ID"], env(self.services["minio"])["MINIO_ROOT_USER"])
                self.assertEqual(e["AWS_SECRET_ACCESS_KEY"], env(self.services["minio"])["MINIO_ROOT_PASSWORD"])
                deps = depends(self.services[name])
                self.assertEqual(deps.get("redis"), "service_healthy")
                self.assertEqual(deps.get("create-bucket"), "service_completed_successfully")

    def test_redis_durability(self):
        redis = flags(self.services["redis"]["command"])
        self.assertEqual(redis.get("--appendonly"), "yes", "AOF on")
        self.assertEqual(redis.get("--appendfsync"), "everysec")
        # One Redis and no replica: min-replicas-to-write would refuse every write.
        self.assertNotIn("--min-replicas-to-write", redis)
        self.assertNotIn("--min-replicas-max-lag", redis)
        self.assertIn("/data", " ".join(str(v) for v in self.services["redis"].get("volumes", [])),
                      "the AOF outlives the container")
        # ... but the setting for deployments with replicas is shown, commented, with the lag.
        with open(self.path, encoding="utf-8") as fh:
            comments = "\n".join(line.strip() for line in fh if line.strip().startswith("#"))
        for setting in ("--min-replicas-to-write", "--min-replicas-max-lag", "--appendfsync"):
            self.assertIn(setting, comments, f"the commented example lacks {setting}")
        self.assertRegex(comments, r"(?i)asynchronous")
        self.assertRegex(comments, r"(?i)rebuild")

    def test_graceful_stop(self):
        for name in INSTANCES:
            with self.subTest(instance=name):
                service = self.services[name]
                grace = env(service).get("SHUTDOWN_GRACE_SECS")
                self.assertIsNotNone(grace, "SHUTDOWN_GRACE_SECS is set")
                self.assertRegex(grace, r"^\d+$")
                self.assertIn("stop_grace_period", service, "compose would kill it 10 s after SIGTERM")
                stop = duration_secs(service["stop_grace_period"])
                # Time for the merges to finish or be handed back, and the WebSockets to close,
                # but not so long that a hung instance holds up a restart.
                self.assertGreater(stop, int(grace), "stop_grace_period must outlast SHUTDOWN_GRACE_SECS")
                self.assertLessEqual(stop, int(grace) + 60)
                self.assertNotIn("stop_signal", service, "the server shuts down on SIGTERM")
        with open(os.path.join(INFRA, "Dockerfile"), encoding="utf-8") as fh:
            dockerfile = fh.read()
        # Exec form: the server is PID 1 and gets the SIGTERM itself, not a shell.
        self.assertRegex(dockerfile, r'(?m)^ENTRYPOINT \[')

    def test_load_balancer(self):
        nginx = self.services["nginx"]
        self.assertEqual(published(nginx), {8080: 8080})
        e = env(nginx)
        self.assertEqual(e["SCREENREC_LISTEN"], "8080")
        upstreams = re.findall(r"server\s+([\w-]+):(\d+)\s+fail_timeout=2s;", e["SCREENREC_UPSTREAMS"])
        self.assertEqual(sorted(h for h, _ in upstreams), sorted(INSTANCES), "each instance, skipped 2 s when it refuses")
        with open(os.path.join(INFRA, "Dockerfile"), encoding="utf-8") as fh:
            dockerfile = fh.read()
        listen = re.search(r"BIND_ADDR=0\.0\.0\.0:(\d+)", dockerfile)
        self.assertTrue(listen, "the image listens on all interfaces")
        self.assertEqual({p for _, p in upstreams}, {listen.group(1)}, "upstream port = the instances' port")
        for name in INSTANCES:
            self.assertEqual(depends(nginx).get(name), "service_healthy", name)
        mounts = dict(bind_mounts(nginx))
        self.assertIn("./nginx/screenrec.conf.template", mounts)
        self.assertRegex(mounts["./nginx/screenrec.conf.template"], r"^/etc/nginx/templates/.+\.template$")
        with open(os.path.join(INFRA, "nginx", "screenrec.conf.template"), encoding="utf-8") as fh:
            template = fh.read()
        for var in re.findall(r"\$\{(\w+)\}", template):
            self.assertIn(var, e, f"the template uses ${{{var}}}, which nginx's environment lacks")

    def test_ports(self):
        self.assertEqual(published(self.services["minio"]), {9000: 9000, 9001: 9001})
        for name in INSTANCES:
            self.assertNotIn("ports", self.services[name], "instances are reached through nginx only")

    def test_healthchecks(self):
        for name in ("redis", "minio", "nginx", *INSTANCES):
            with self.subTest(service=name):
                self.assertTrue(health_test(self.services[name]), f"{name} has no health check")
        self.assertIn("redis-cli", health_test(self.services["redis"]))
        for name in INSTANCES:
            self.assertIn("/readyz", health_test(self.services[name]))
            self.assertIn("127.0.0.1/8080", health_test(self.services[name]))
        self.assertIn("/healthz", health_test(self.services["nginx"]))

    def test_mounted_files_exist(self):
        self.assert_mounts_exist()

    def test_images_pinned(self):
        self.assert_images_pinned()

    def test_dependencies(self):
        self.assert_depends_on_known_services()


class LocalStackCompose(ComposeChecks):
    path = os.path.join(LOCALSTACK, "docker-compose.yml")

    def test_services(self):
        self.assertIn("localstack", self.services)
        self.assertIn("redis", self.services)

    def test_localstack(self):
        ls = self.services["localstack"]
        self.assertRegex(ls["image"], r"^localstack/localstack:\d+\.\d+\.\d+$", "a pinned LocalStack image")
        self.assertEqual(published(ls).get(4566), 4566)
        e = env(ls)
        self.assertEqual(set(e["SERVICES"].split(",")), {"s3", "sqs"})
        self.assertEqual(e.get("SQS_ENDPOINT_STRATEGY"), "path")
        # The same services and queue URL strategy as the Docker-less start.sh the suite uses.
        with open(os.path.join(LOCALSTACK, "start.sh"), encoding="utf-8") as fh:
            start = fh.read()
        self.assertIn(f"SERVICES={e['SERVICES']}", start)
        self.assertIn("SQS_ENDPOINT_STRATEGY=path", start)

    def test_init_hook_mounted(self):
        mounts = dict(bind_mounts(self.services["localstack"]))
        sources = [s for s, t in mounts.items() if t.rstrip("/") == "/etc/localstack/init/ready.d"]
        self.assertEqual(len(sources), 1, "the ready.d hooks are mounted")
        hooks_dir = os.path.normpath(os.path.join(self.dir, sources[0]))
        hooks = sorted(f for f in os.listdir(hooks_dir) if f.endswith(".sh"))
        self.assertIn("10-resources.sh", hooks)
        for hook in hooks:
            path = os.path.join(hooks_dir, hook)
            with self.subTest(hook=hook):
                # LocalStack runs .sh hooks directly: they need the executable bit and a shebang.
                self.assertTrue(os.access(path, os.X_OK), f"{hook} is not executable")
                with open(path, encoding="utf-8") as fh:
                    self.assertTrue(fh.readline().startswith("#!"), f"{hook} has no shebang")

    def test_init_hook_creates_the_resources(self):
        e = env(self.services["localstack"])
        with open(os.path.join(LOCALSTACK, "init", "ready.d", "10-resources.sh"), encoding="utf-8") as fh:
            hook = fh.read()
        for action in ("create-bucket", "put-bucket-cors", "create-queue", "RedrivePolicy"):
            self.assertIn(action, hook)
        # Names as terraform/ makes them with the default name_prefix "screenrec".
        self.assertEqual(e["SCREENREC_BUCKET"], "screenrec")
        self.assertEqual(e["SCREENREC_MERGE_QUEUE"], "screenrec-merge")
        for var, default in (("SCREENREC_BUCKET", "screenrec"), ("SCREENREC_MERGE_QUEUE", "screenrec-merge")):
            self.assertIn(f"${{{var}:-{default}}}", hook)
        self.assertIn('"$QUEUE-dlq"', hook)

    def test_healthchecks(self):
        self.assertIn("/_localstack/init/ready", health_test(self.services["localstack"]))
        self.assertIn("completed", health_test(self.services["localstack"]))
        self.assertIn("redis-cli", health_test(self.services["redis"]))
        self.assertEqual(published(self.services["redis"]).get(6379), 6379)

    def test_mounted_files_exist(self):
        self.assert_mounts_exist()

    def test_images_pinned(self):
        for name, service in self.services.items():
            self.assertNotRegex(service.get("image", ""), r":latest$", name)
        self.assert_images_pinned()

    def test_dependencies(self):
        self.assert_depends_on_known_services()


del ComposeChecks  # a base, not a test case

if __name__ == "__main__":
    unittest.main()
