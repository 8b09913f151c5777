"""Static tests of the monitoring in infra/: Prometheus (prometheus/prometheus.yml), Grafana's
provisioning (grafana/provisioning) and its dashboard (grafana/dashboards/screenrec.json), and
the nginx rule that keeps /metrics off the public entry point.

They check that Prometheus scrapes every screenrec instance of docker-compose.yml on the port
it listens on, that Grafana's datasource reaches that Prometheus and its provisioning points at
files that exist, and that every PromQL expression of the dashboard names only the metric
families screenrec serves (METRICS below, which must match the README's table), with their
labels and label values: this keeps the dashboard from drifting from the server. With nginx
installed (scripts/install-deps installs it) the template is rendered, checked with `nginx -t`
and run in front of a stub instance; with promtool, the Prometheus configuration is checked by
it. Run from the repository root (terraform/check.sh does, with its venv):

    /opt/screenrec-tools/checkov/bin/python -m unittest discover -s infra/tests -v
"""

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
from urllib.parse import urlparse

import yaml

from test_compose import INFRA, INSTANCES, ROOT, bind_mounts, depends, env, health_test, load

PROMETHEUS_CONFIG = os.path.join(INFRA, "prometheus", "prometheus.yml")
GRAFANA = os.path.join(INFRA, "grafana")
DATASOURCES = os.path.join(GRAFANA, "provisioning", "datasources", "prometheus.yml")
DASHBOARD_PROVIDERS = os.path.join(GRAFANA, "provisioning", "dashboards", "screenrec.yml")
DASHBOARD = os.path.join(GRAFANA, "dashboards", "screenrec.json")
NGINX_TEMPLATE = os.path.join(INFRA, "nginx", "screenrec.conf.template")

# The metric families GET /metrics serves (src/metrics.rs), exactly as scraped: type, labels,
# and the values of the labels that have a fixed set (None: any value, e.g. a route pattern).
METRICS = {
    "screenrec_http_requests_total": ("counter", {"route": None, "method": None, "status": None}),
    "screenrec_http_request_duration_seconds": ("histogram", {"route": None, "method": None, "status": None}),
    "screenrec_chunks_received_total": ("counter", {"path": {"server", "presigned", "websocket"}}),
    "screenrec_chunks_received_bytes_total": ("counter", {"path": {"server", "presigned", "websocket"}}),
    "screenrec_merges_total": (
        "counter",
        {"outcome": {"ready", "failed", "already_done", "busy", "deleted", "retried"}},
    ),
    "screenrec_merge_duration_seconds": ("histogram", {}),
    "screenrec_merge_queue_depth": ("gauge", {}),
    "screenrec_webhook_deliveries_total": ("counter", {"outcome": {"delivered", "failed", "dead_lettered"}}),
    "screenrec_websocket_connections": ("gauge", {}),
}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}


def series():
    """{series name as scraped: (family, type, labels)}: a histogram's _bucket, _sum, _count."""
    out = {}
    for family, (kind, labels) in METRICS.items():
        if kind == "histogram":
            out[family + "_bucket"] = (family, "histogram", dict(labels, le=None))
            out[family + "_sum"] = (family, "counter", labels)
            out[family + "_count"] = (family, "counter", labels)
        else:
            out[family] = (family, kind, labels)
    return out


SERIES = series()


def load_yaml(path):
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    assert isinstance(doc, dict), f"{path}: not a YAML mapping"
    return doc


def dashboard_panels(panels):
    """Every panel, those inside collapsed rows included."""
    for p in panels:
        yield p
        yield from dashboard_panels(p.get("panels", []))


def dashboard_queries(dash):
    """(where, PromQL) of every target and every query variable of a dashboard."""
    for p in dashboard_panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            yield f"panel {p.get('title')!r} target {t.get('refId')}", t.get("expr", "")
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            for text in {q, v.get("definition", "")} - {""}:
                # label_values(metric, label): the metric is a selector like any other.
                yield f"variable {v.get('name')!r}", text


def matchers(text):
    """{label: (op, value)} of a selector's braces."""
    return {m.group(1): (m.group(2), m.group(3))
            for m in re.finditer(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', text)}


def compose_instances(services):
    """{service: port} of the screenrec instances: the services built from infra/Dockerfile,
    on the port of their BIND_ADDR (the image's unless the service sets it)."""
    with open(os.path.join(INFRA, "Dockerfile"), encoding="utf-8") as fh:
        image_bind = re.search(r"BIND_ADDR=([\w.:\[\]]+)", fh.read()).group(1)
    out = {}
    for name, service in services.items():
        if "build" in service:
            bind = env(service).get("BIND_ADDR") or image_bind
            out[name] = int(bind.rsplit(":", 1)[1])
    return out


def flag_values(command):
    """{--flag: value} of a command's --flag=value words."""
    words = command if isinstance(command, list) else str(command).split()
    return dict(str(w).split("=", 1) for w in words if str(w).startswith("--") and "=" in str(w))


def host_path(service, container_path):
    """The repository path a bind mount of service puts at container_path (or above it)."""
    for source, target in bind_mounts(service):
        target = target.rstrip("/")
        if container_path == target or container_path.startswith(target + "/"):
            return os.path.normpath(os.path.join(INFRA, source, os.path.relpath(container_path, target)))
    return None


class Monitoring(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.services = load(os.path.join(INFRA, "docker-compose.yml"))["services"]
        cls.instances = compose_instances(cls.services)
        cls.prom = load_yaml(PROMETHEUS_CONFIG)
        cls.datasources = load_yaml(DATASOURCES)
        cls.providers = load_yaml(DASHBOARD_PROVIDERS)
        with open(DASHBOARD, encoding="utf-8") as fh:
            cls.dashboard = json.load(fh)

    # -- Prometheus

    def screenrec_jobs(self):
        """The scrape jobs with a target on a screenrec instance."""
        return [job for job in self.prom["scrape_configs"]
                if any(t.split(":")[0] in self.instances
                       for sc in job.get("static_configs", []) for t in sc.get("targets", []))]

    def test_metrics_list_matches_the_readme(self):
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
            readme = fh.read()
        section = re.search(r"(?ms)^### Metrics\n(.*?)^##", readme)
        self.assertTrue(section, "README.md has a '### Metrics' section")
        documented = set(re.findall(r"`(screenrec_\w+)`", section.group(1)))
        self.assertEqual(documented, set(METRICS), "METRICS here and the README's table name the same families")

    def test_prometheus_scrapes_every_instance(self):
        self.assertEqual(sorted(self.instances), sorted(INSTANCES))
        self.assertEqual(self.prom["global"]["scrape_interval"], "15s")
        jobs = self.screenrec_jobs()
        self.assertEqual(len(jobs), 1, "one job scrapes the instances")
        job = jobs[0]
        self.assertEqual(job.get("metrics_path", "/metrics"), "/metrics")
        self.assertEqual(job.get("scheme", "http"), "http")
        self.assertNotIn("scrape_interval", job, "the global 15 s, which Grafana's timeInterval repeats")
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        self.assertEqual(sorted(targets), sorted(f"{n}:{p}" for n, p in self.instances.items()),
                         "each instance of the compose file, on the port it listens on, once")
        for name in self.instances:
            # The same port the health check probes: the API's, where /metrics is served.
            self.assertIn(f"127.0.0.1/{self.instances[name]}", health_test(self.services[name]))

    def test_prometheus_targets_are_compose_services(self):
        for job in self.prom["scrape_configs"]:
            for sc in job.get("static_configs", []):
                for target in sc["targets"]:
                    host, port = target.rsplit(":", 1)
                    with self.subTest(job=job["job_name"], target=target):
                        self.assertTrue(port.isdigit())
                        self.assertTrue(host == "localhost" or host in self.services, f"unknown host {host}")
        names = [job["job_name"] for job in self.prom["scrape_configs"]]
        self.assertEqual(len(names), len(set(names)), "job names are unique")

    def test_prometheus_service(self):
        prom = self.services["prometheus"]
        self.assertRegex(prom["image"], r"^prom/prometheus:v3\.\d+\.\d+$")
        config = flag_values(prom.get("command", [])).get("--config.file", "/etc/prometheus/prometheus.yml")
        self.assertEqual(host_path(prom, config), PROMETHEUS_CONFIG, "the mounted configuration is this one")
        self.assertNotIn("--web.listen-address", flag_values(prom.get("command", [])), "listens on 9090")
        # No authentication: published on loopback only.
        self.assertEqual([str(p) for p in prom.get("ports", [])], ["127.0.0.1:9090:9090"])
        self.assertIn("/-/ready", health_test(prom))
        self.assertIn("/prometheus", " ".join(str(v) for v in prom.get("volumes", [])), "the TSDB is a volume")

    @unittest.skipUnless(shutil.which("promtool"), "promtool is not installed")
    def test_promtool_checks_the_configuration(self):
        out = subprocess.run(["promtool", "check", "config", "--syntax-only", PROMETHEUS_CONFIG],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)

    # -- Grafana provisioning

    def test_datasource(self):
        self.assertEqual(self.datasources.get("apiVersion"), 1)
        sources = self.datasources["datasources"]
        self.assertEqual(len(sources), 1)
        ds = sources[0]
        self.assertEqual(ds["type"], "prometheus")
        self.assertEqual(ds["uid"], "prometheus")
        self.assertEqual(ds.get("access", "proxy"), "proxy", "Grafana's server, not the browser, queries it")
        url = urlparse(ds["url"])
        self.assertEqual((url.scheme, url.hostname, url.port), ("http", "prometheus", 9090))
        self.assertIn(url.hostname, self.services)
        self.assertEqual(ds["jsonData"]["timeInterval"], self.prom["global"]["scrape_interval"],
                         "Grafana's minimum step is the scrape interval")

    def test_grafana_service(self):
        grafana = self.services["grafana"]
        self.assertRegex(grafana["image"], r"^grafana/grafana:\d+\.\d+\.\d+$")
        self.assertEqual(depends(grafana).get("prometheus"), "service_healthy")
        self.assertIn("/api/health", health_test(grafana))
        self.assertEqual([str(p) for p in grafana.get("ports", [])], ["3000:3000"])
        e = env(grafana)
        # The password comes from the environment; the default one must be changed at first login.
        self.assertRegex(e["GF_SECURITY_ADMIN_PASSWORD"], r"^\$\{GRAFANA_ADMIN_PASSWORD[:-]")
        self.assertEqual(e.get("GF_USERS_ALLOW_SIGN_UP"), "false")
        self.assertEqual(e.get("GF_AUTH_ANONYMOUS_ENABLED"), "false")
        home = e.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        if home:
            self.assertEqual(host_path(grafana, home), DASHBOARD, "the home dashboard is screenrec's")

    def test_provisioning_points_at_files_that_exist(self):
        grafana = self.services["grafana"]
        provisioning = host_path(grafana, "/etc/grafana/provisioning")
        self.assertEqual(provisioning, os.path.join(GRAFANA, "provisioning"))
        for kind, path in (("datasources", DATASOURCES), ("dashboards", DASHBOARD_PROVIDERS)):
            self.assertEqual(host_path(grafana, f"/etc/grafana/provisioning/{kind}/{os.path.basename(path)}"), path)
        self.assertEqual(self.providers.get("apiVersion"), 1)
        providers = self.providers["providers"]
        self.assertEqual(len(providers), 1)
        provider = providers[0]
        self.assertEqual(provider["type"], "file")
        folder = host_path(grafana, provider["options"]["path"])
        self.assertIsNotNone(folder, f"{provider['options']['path']} is not mounted into Grafana")
        self.assertTrue(os.path.isdir(folder), folder)
        self.assertEqual(folder, os.path.dirname(DASHBOARD))
        dashboards = sorted(f for f in os.listdir(folder) if f.endswith(".json"))
        self.assertIn("screenrec.json", dashboards)
        for name in dashboards:
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                self.assertIn("uid", json.load(fh), name)

    # -- the dashboard

    def test_dashboard_shape(self):
        d = self.dashboard
        self.assertEqual(d["uid"], "screenrec")
        self.assertIsInstance(d["schemaVersion"], int)
        self.assertGreaterEqual(d["schemaVersion"], 36)
        self.assertNotIn("id", d, "a provisioned dashboard has no database id")
        panels = list(dashboard_panels(d["panels"]))
        ids = [p["id"] for p in panels]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        for p in panels:
            with self.subTest(panel=p.get("title")):
                self.assertTrue(p.get("title"))
                g = p["gridPos"]
                self.assertTrue(0 <= g["x"] and g["x"] + g["w"] <= 24, "within the 24 columns")
                if p["type"] != "row":
                    self.assertTrue(p.get("targets"), "a panel that queries something")
                    for t in p["targets"]:
                        self.assertTrue(t.get("expr", "").strip())

    def test_dashboard_uses_the_provisioned_datasource(self):
        uid = self.datasources["datasources"][0]["uid"]
        for p in dashboard_panels(self.dashboard["panels"]):
            if p["type"] == "row":
                continue
            with self.subTest(panel=p["title"]):
                self.assertEqual(p["datasource"], {"type": "prometheus", "uid": uid})
                for t in p["targets"]:
                    self.assertEqual(t.get("datasource", p["datasource"]), {"type": "prometheus", "uid": uid})
        for v in self.dashboard.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                self.assertEqual(v["datasource"], {"type": "prometheus", "uid": uid})

    def test_dashboard_names_only_served_metrics(self):
        used = set()
        for where, expr in dashboard_queries(self.dashboard):
            for name in re.findall(r"\bscreenrec_\w+", expr):
                with self.subTest(where=where, metric=name):
                    self.assertIn(name, SERIES, f"{name} is not a series of the families screenrec serves")
                    used.add(SERIES.get(name, (name,))[0])
        self.assertEqual(used, set(METRICS), "the dashboard shows every family")

    def test_dashboard_labels_exist(self):
        jobs = {job["job_name"] for job in self.screenrec_jobs()}
        for where, expr in dashboard_queries(self.dashboard):
            # Selectors: label names the series has, values from its fixed sets.
            for m in re.finditer(r"\b(screenrec_\w+|up)\s*\{([^}]*)\}", expr):
                name = m.group(1)
                for label, (op, value) in matchers(m.group(2)).items():
                    with self.subTest(where=where, selector=m.group(0), label=label):
                        if name == "up":
                            self.assertIn(label, TARGET_LABELS)
                            if label == "job":
                                self.assertIn(value, jobs, "up{job} names the job that scrapes the instances")
                            continue
                        if name not in SERIES:
                            continue  # test_dashboard_names_only_served_metrics reports it
                        known = SERIES[name][2]
                        self.assertIn(label, set(known) | TARGET_LABELS)
                        if op == "=" and known.get(label):
                            self.assertIn(value, known[label])
            # Grouping: by (labels) of the next series named after it.
            for m in re.finditer(r"\bby\s*\(([^)]*)\)", expr):
                following = re.search(r"\bscreenrec_\w+", expr[m.end():])
                self.assertTrue(following, f"{where}: by () over no screenrec series")
                if following.group(0) not in SERIES:
                    continue
                known = set(SERIES[following.group(0)][2]) | TARGET_LABELS
                for label in (l.strip() for l in m.group(1).split(",") if l.strip()):
                    with self.subTest(where=where, by=label):
                        self.assertIn(label, known, f"{following.group(0)} has no label {label}")

    def test_dashboard_functions_fit_the_types(self):
        for where, expr in dashboard_queries(self.dashboard):
            for m in re.finditer(r"\b(rate|irate|increase)\(\s*(screenrec_\w+)", expr):
                if m.group(2) not in SERIES:
                    continue
                with self.subTest(where=where, call=m.group(0)):
                    self.assertIn(SERIES[m.group(2)][1], ("counter", "histogram"), "a rate of a gauge")
            for m in re.finditer(r"\bhistogram_quantile\(\s*([\d.]+)\s*,", expr):
                rest = expr[m.end():]
                with self.subTest(where=where):
                    self.assertTrue(0 < float(m.group(1)) < 1)
                    self.assertRegex(rest, r"^\s*sum\s+by\s*\([^)]*\ble\b", "summed by le")
                    self.assertRegex(rest, r"^[^_]*\brate\(\s*screenrec_\w+_bucket\b", "over a rate of _bucket")

    def test_dashboard_legends_name_grouped_labels(self):
        for p in dashboard_panels(self.dashboard["panels"]):
            for t in p.get("targets", []):
                grouped = {l.strip() for g in re.findall(r"\bby\s*\(([^)]*)\)", t["expr"]) for l in g.split(",")}
                for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")):
                    with self.subTest(panel=p["title"], legend=t["legendFormat"]):
                        self.assertIn(label, grouped - {"le"}, "the legend shows a label the query keeps")

    def test_dashboard_panels(self):
        """The panels the README describes, found by what they query."""
        exprs = [t["expr"] for p in dashboard_panels(self.dashboard["panels"]) for t in p.get("targets", [])]
        text = "\n".join(exprs)

        def has(pattern):
            return any(re.search(pattern, e) for e in exprs)

        self.assertTrue(has(r"by \(route, status\) \(rate\(screenrec_http_requests_total"), "request rate")
        for q in ("0.5", "0.95", "0.99"):
            self.assertTrue(has(rf"histogram_quantile\({q}, sum by \(le, route\) \(rate\(screenrec_http_request_duration_seconds_bucket"), f"latency {q}")
        for q in ("0.5", "0.95"):
            self.assertTrue(has(rf"histogram_quantile\({q}, sum by \(le\) \(rate\(screenrec_merge_duration_seconds_bucket"), f"merge {q}")
        self.assertTrue(has(r'status=~"5\.\.".*\)\s*/\s*sum'), "5xx ratio")
        self.assertTrue(has(r"by \(path\) \(rate\(screenrec_chunks_received_total"))
        self.assertTrue(has(r"by \(path\) \(rate\(screenrec_chunks_received_bytes_total"))
        self.assertTrue(has(r"by \(outcome\) \(rate\(screenrec_merges_total"))
        self.assertTrue(has(r"by \(outcome\) \(rate\(screenrec_webhook_deliveries_total"))
        # The queue depth is cluster-wide, reported alike by each instance: not summed.
        self.assertNotRegex(text, r"sum[^\n]*screenrec_merge_queue_depth")
        self.assertTrue(has(r"^sum\(screenrec_websocket_connections"))
        self.assertTrue(has(r"by \(instance\) \(screenrec_websocket_connections"))
        # dead_lettered stands out: red and thicker in the deliveries panel.
        panel = next(p for p in dashboard_panels(self.dashboard["panels"])
                     if any("rate(screenrec_webhook_deliveries_total" in t["expr"] for t in p.get("targets", [])))
        override = next(o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "dead_lettered")
        props = {pr["id"]: pr["value"] for pr in override["properties"]}
        self.assertEqual(props["color"]["fixedColor"], "red")

    # -- nginx keeps /metrics from the public

    def test_nginx_refuses_metrics(self):
        with open(NGINX_TEMPLATE, encoding="utf-8") as fh:
            template = fh.read()
        block = re.search(r"(?ms)^\s*location\s*=\s*/metrics\s*\{(.*?)^\s*\}", template)
        self.assertTrue(block, "an exact location for /metrics")
        self.assertRegex(block.group(1), r"\breturn\s+404\b")
        self.assertNotIn("proxy_pass", block.group(1))

    @unittest.skipUnless(shutil.which("nginx"), "nginx is not installed")
    def test_nginx_runs_and_keeps_metrics_in(self):
        """The template, rendered as the compose file's nginx renders it, in front of a stub
        instance: /metrics (however spelled) is answered by nginx, the rest is proxied."""
        seen = []

        class Stub(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(self.path)
                body = b"instance"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
        threading.Thread(target=stub.serve_forever, daemon=True).start()
        self.addCleanup(stub.server_close)
        self.addCleanup(stub.shutdown)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        with open(NGINX_TEMPLATE, encoding="utf-8") as fh:
            site = (fh.read()
                    .replace("${SCREENREC_UPSTREAMS}", f"server 127.0.0.1:{stub.server_port} fail_timeout=2s;")
                    .replace("${SCREENREC_LISTEN}", f"127.0.0.1:{port}"))
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write(
                f"daemon off;\n{user}worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
                f"events {{}}\nhttp {{\naccess_log off;\nclient_body_temp_path {d}/body;\n"
                f"proxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fcgi;\nuwsgi_temp_path {d}/uwsgi;\n"
                f"scgi_temp_path {d}/scgi;\n{site}\n}}\n")
        check = subprocess.run(["nginx", "-t", "-p", d, "-c", conf], capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stderr)
        proc = subprocess.Popen(["nginx", "-p", d, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(proc.wait, 10)
        self.addCleanup(proc.terminate)

        def get(path):
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                        s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
                        data = b""
                        while chunk := s.recv(65536):
                            data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    return int(head.split()[1]), head.decode("latin-1").lower(), body
                except ConnectionRefusedError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

        for path in ("/metrics", "/metrics?format=text", "//metrics", "/%6Detrics", "/./metrics"):
            with self.subTest(path=path):
                status, head, body = get(path)
                self.assertEqual(status, 404)
                self.assertIn("content-type: application/json", head)
                self.assertEqual(json.loads(body)["error"]["code"], "not_found", "the API's own 404")
        self.assertEqual(seen, [], "no /metrics request reached the instance")
        for path in ("/healthz", "/recordings/abc", "/metricsx"):
            with self.subTest(path=path):
                self.assertEqual(get(path)[0], 200)
        self.assertEqual(seen, ["/healthz", "/recordings/abc", "/metricsx"])


if __name__ == "__main__":
    unittest.main()
