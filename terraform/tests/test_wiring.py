"""Static wiring tests for the screenrec Terraform (no providers, no AWS).

Parses every terraform/*.tf with python-hcl2 and checks that the APIs, functions, queue,
IAM and bucket are connected the way the deployment needs. Run from the repository root:

    /opt/screenrec-tools/checkov/bin/python -m unittest discover -s terraform/tests -v

The helpers accept both parse shapes python-hcl2 has produced over its versions (every
attribute wrapped in a one-element list, or not; keys and strings with or without quotes).
"""

import glob
import os
import re
import unittest

import hcl2

TF_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

HTTP_ROUTES = {
    "GET /",
    "GET /web/{name}",
    "POST /recordings",
    "GET /recordings/{id}",
    "POST /recordings/{id}/chunks",
    "PUT /recordings/{id}/chunks/{seq}",
    "POST /recordings/{id}/chunks/{seq}/complete",
    "POST /recordings/{id}/stop",
    "POST /recordings/{id}/merge",
    "GET /recordings/{id}/download",
    "GET /recordings/{id}/poster",
    "GET /healthz",
    "GET /readyz",
    "GET /openapi.json",
}
WS_ROUTES = {"$connect", "$disconnect", "$default"}
FUNCTIONS = ("api", "ws", "merge")

# The sweep settings every function reads alike (RETENTION_DAYS too, but only when set).
SWEEP_ENV = ("ABANDON_AFTER_SECS", "ABANDONED")
ENV_VARS = {
    "api": ("STORAGE", "S3_BUCKET", "REDIS_URL", "REDIS_PREFIX", "LOG_FORMAT", "PRESIGN_TTL_SECS",
            "MAX_CHUNK_BYTES", "MERGE_QUEUE_URL", "APIGW_MANAGEMENT_ENDPOINT", *SWEEP_ENV),
    "ws": ("STORAGE", "S3_BUCKET", "REDIS_URL", "REDIS_PREFIX", "APIGW_MANAGEMENT_ENDPOINT",
           "LOG_FORMAT", "MERGE_QUEUE_URL", *SWEEP_ENV),
    "merge": ("STORAGE", "S3_BUCKET", "FFMPEG_PATH", "MERGE_WORK_DIR", "MERGE_MAX_DELIVERIES",
              "REDIS_URL", "REDIS_PREFIX", "APIGW_MANAGEMENT_ENDPOINT", "LOG_FORMAT",
              "MERGE_QUEUE_URL", *SWEEP_ENV),
}

# Every function may rebuild a recording Redis lost and re-queue it if stopped (sqs:SendMessage).
REQUIRED_ACTIONS = {
    "api": {"s3:PutObject", "s3:GetObject", "sqs:SendMessage", "execute-api:ManageConnections"},
    "ws": {"execute-api:ManageConnections", "sqs:SendMessage"},
    "merge": {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:SendMessage",
        "execute-api:ManageConnections",
    },
}

# Object keys (src/domain/key.rs): chunks/{id}/{index:08}, recordings/{id}/manifest.json,
# recordings/{id}/output.{ext}, active/{id}. Which object actions each function has on which
# prefix: exactly these, so a missing grant and a needless one both fail.
CHUNKS = "local.chunk_objects_arn"
RECORDINGS = "local.recordings_objects_arn"
ACTIVE = "local.active_objects_arn"
OBJECT_ACCESS = {
    "api": {
        CHUNKS: {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
        RECORDINGS: {"s3:GetObject", "s3:PutObject"},
        # create writes the marker.
        ACTIVE: {"s3:PutObject"},
    },
    # Presigns the download URL in the status of a ready recording; reads chunk digests when it
    # rebuilds one.
    "ws": {RECORDINGS: {"s3:GetObject"}, CHUNKS: {"s3:GetObject"}},
    "merge": {
        # The sweep deletes orphan chunks and those of deleted recordings.
        CHUNKS: {"s3:GetObject", "s3:DeleteObject"},
        # The sweep deletes recordings past retention and abandoned ones (abandoned = delete),
        # and aborts stale multipart uploads.
        RECORDINGS: {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                     "s3:ListMultipartUploadParts"},
        # The merge and the sweep remove finished recordings' markers.
        ACTIVE: {"s3:DeleteObject"},
    },
}
# S3 actions on the bucket itself rather than on objects, per function: the listings (a
# rebuild's chunks/{id}/, the sweep's active/, recordings/ and chunks/), HeadBucket, 404 for a
# missing object; and the sweep's ListMultipartUploads.
BUCKET_ACCESS = {
    "api": {"s3:ListBucket"},
    "ws": {"s3:ListBucket"},
    "merge": {"s3:ListBucket", "s3:ListBucketMultipartUploads"},
}
BUCKET_ACTIONS = set().union(*BUCKET_ACCESS.values())


# --- parsing helpers ------------------------------------------------------------------------


def unquote(s):
    if isinstance(s, str) and len(s) >= 2 and s[0] == s[-1] == '"':
        return s[1:-1]
    return s


def norm(s):
    """A reference string without ${}, quotes or escapes: ${aws_iam_role.fn["api"].arn} ->
    aws_iam_role.fn[api].arn."""
    return re.sub(r'[\\"]', "", s).replace("${", "").replace("}", "")


def unwrap(v):
    """Strip the one-element list python-hcl2 wraps attribute values in."""
    while isinstance(v, list) and len(v) == 1 and not isinstance(v[0], dict):
        v = v[0]
    return unquote(v) if isinstance(v, str) else v


def value(v):
    """A local's value: the one-element list python-hcl2 may wrap it in stripped, whatever it
    holds (objects included), strings unquoted."""
    while isinstance(v, list) and len(v) == 1:
        v = v[0]
    return unquote(v) if isinstance(v, str) else v


def strings(v):
    """Every string inside v, recursively, unquoted."""
    if isinstance(v, str):
        yield unquote(v)
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            if not str(k).startswith("__"):
                yield from strings(x)


def block_list(v):
    """Nested blocks as a list of dicts."""
    if isinstance(v, dict):
        return [v]
    out = []
    for x in v or []:
        out.extend(block_list(x) if isinstance(x, (list, dict)) else [])
    return out


def load_all():
    files = sorted(glob.glob(os.path.join(TF_DIR, "*.tf")))
    docs = {}
    for f in files:
        with open(f, encoding="utf-8") as fh:
            docs[os.path.basename(f)] = hcl2.load(fh)
    return docs


def collect(docs, kind):
    """{type: {name: body}} for kind "resource" or "data"; {name: body} for "variable"."""
    out = {}
    for doc in docs.values():
        for entry in doc.get(kind, []):
            for typ, named in entry.items():
                typ = unquote(typ)
                if kind == "variable":
                    out[typ] = named
                    continue
                for name, body in named.items():
                    out.setdefault(typ, {})[unquote(name)] = body
    return out


def collect_locals(docs):
    out = {}
    for doc in docs.values():
        for entry in doc.get("locals", []):
            for k, v in entry.items():
                if not k.startswith("__"):
                    out[k] = v
    return out


# --- tests ----------------------------------------------------------------------------------


class TerraformWiring(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = load_all()
        cls.res = collect(cls.docs, "resource")
        cls.data = collect(cls.docs, "data")
        cls.vars = collect(cls.docs, "variable")
        cls.locals = collect_locals(cls.docs)
        cls.raw = {}
        for f in glob.glob(os.path.join(TF_DIR, "*.tf")):
            with open(f, encoding="utf-8") as fh:
                cls.raw[os.path.basename(f)] = fh.read()

    # helpers needing state

    def attr(self, body, key):
        self.assertIn(key, body, f"missing attribute {key}")
        return unwrap(body[key])

    def ref(self, body, key):
        """An attribute holding one expression, normalised (see norm)."""
        return norm(str(self.attr(body, key)))

    def local(self, name):
        self.assertIn(name, self.locals, f"missing local.{name}")
        return value(self.locals[name])

    def number(self, v):
        """Evaluate a number, a local reference or simple arithmetic over locals."""
        if isinstance(v, (int, float)):
            return v
        expr = norm(str(v))

        def local(m):
            return str(self.number(self.local(m.group(1))))

        expr = re.sub(r"local\.(\w+)", local, expr)
        self.assertRegex(expr, r"^[0-9 +*()-]+$", f"cannot evaluate {v!r}")
        return eval(expr)  # digits and operators only, checked above

    # the functions: one aws_lambda_function.fn over local.functions

    def fn_resource(self):
        self.assertIn("fn", self.res["aws_lambda_function"], "aws_lambda_function.fn is missing")
        return self.res["aws_lambda_function"]["fn"]

    def settings(self, name):
        """The function's entry in local.functions."""
        functions = self.local("functions")
        self.assertIsInstance(functions, dict, "local.functions is not an object")
        self.assertIn(name, functions, f"local.functions has no {name}")
        return functions[name]

    def env(self, name):
        """The function's environment: local.common_env merged with its own env, values
        normalised."""
        fn = self.fn_resource()
        variables = norm(str(self.attr(block_list(fn["environment"])[0], "variables")))
        self.assertEqual(variables.replace(" ", ""),
                         "merge(local.common_env,local.retention_env,local.webhook_env,each.value.env)")
        merged = dict(self.local("common_env"))
        own = value(self.settings(name)["env"])
        self.assertIsInstance(own, dict, f"{name}: env is not a literal object")
        merged.update(own)
        return {k: norm(str(value(v))) for k, v in merged.items() if not k.startswith("__")}

    def route_keys(self, route_body):
        key = self.ref(route_body, "route_key")
        if key in ("each.value", "each.key"):
            fe = norm(str(unwrap(route_body["for_each"])))
            m = re.search(r"local\.(\w+)", fe)
            self.assertTrue(m, f"for_each {fe!r} is not a local list")
            return set(strings(self.locals[m.group(1)]))
        return {key}

    def routes_to(self, integration_name):
        keys = set()
        for body in self.res.get("aws_apigatewayv2_route", {}).values():
            if f"aws_apigatewayv2_integration.{integration_name}.id" in self.ref(body, "target"):
                keys |= self.route_keys(body)
        return keys

    # IAM: one role and one inline policy per function (for_each over local.function_names); the
    # policy is local.function_policies[function], a document that includes common[function].

    def policy_docs(self, function):
        """(name, body) of every aws_iam_policy_document in the function's inline policy."""
        self.assertEqual(self.ref(self.fn_resource(), "role"), "aws_iam_role.fn[each.key].arn")
        self.assertEqual(self.ref(self.res["aws_iam_role"]["fn"], "for_each"), "local.function_names")
        policies = [
            b
            for b in self.res["aws_iam_role_policy"].values()
            if self.ref(b, "role") == "aws_iam_role.fn[each.key].id"
        ]
        self.assertEqual(len(policies), 1, "one aws_iam_role_policy over the function roles")
        self.assertEqual(self.ref(policies[0], "for_each"), "local.function_names")
        self.assertEqual(self.ref(policies[0], "policy"), "local.function_policies[each.key]")
        own = norm(str(value(self.local("function_policies")[function])))
        m = re.match(r"data\.aws_iam_policy_document\.(\w+)\.json$", own)
        self.assertTrue(m, f"{function}: policy {own!r} is not a policy document")
        docs = [(m.group(1), self.data["aws_iam_policy_document"][m.group(1)])]
        for src in strings(docs[0][1].get("source_policy_documents", [])):
            sm = re.match(r"data\.aws_iam_policy_document\.(\w+)(\[(\w+)\])?\.json$", norm(src))
            self.assertTrue(sm, f"{function}: source document {src!r}")
            if sm.group(3) is not None:
                self.assertEqual(sm.group(3), function, f"{function} includes another function's document")
            docs.append((sm.group(1), self.data["aws_iam_policy_document"][sm.group(1)]))
        return docs

    def statements(self, function):
        """(document, actions, resources) of every Allow statement in the function's policy."""
        out = []
        for name, doc in self.policy_docs(function):
            for st in block_list(doc.get("statement", [])):
                if unwrap(st.get("effect", "Allow")) != "Allow":
                    continue
                actions = set(strings(st.get("actions", [])))
                resources = [norm(r) for r in strings(st.get("resources", []))]
                out.append((name, actions, resources))
        return out

    def actions(self, function):
        return set().union(*(a for _, a, _ in self.statements(function)))

    def dynamic_statements(self, function):
        """(document, for_each, sid, actions, resources) of every dynamic "statement" block in the
        function's policy (statements() has the static ones)."""
        out = []
        for name, doc in self.policy_docs(function):
            for dyn in block_list(doc.get("dynamic", [])):
                for st in block_list(dyn.get("statement", [])):
                    for content in block_list(st.get("content", [])):
                        out.append((
                            name,
                            self.ref(st, "for_each"),
                            unwrap(content.get("sid")),
                            set(strings(content.get("actions", []))),
                            [norm(r) for r in strings(content.get("resources", []))],
                        ))
        return out

    # the tests

    def test_every_file_parses(self):
        self.assertGreaterEqual(len(self.docs), 5)
        for name in ("versions.tf", "variables.tf", "outputs.tf"):
            self.assertIn(name, self.docs)

    def test_http_routes_target_api_function(self):
        api = self.res["aws_apigatewayv2_api"]["http"]
        self.assertEqual(self.attr(api, "protocol_type"), "HTTP")
        integ = self.res["aws_apigatewayv2_integration"]["api"]
        self.assertEqual(self.attr(integ, "integration_type"), "AWS_PROXY")
        self.assertEqual(str(self.attr(integ, "payload_format_version")), "2.0")
        self.assertIn("aws_apigatewayv2_api.http.id", self.ref(integ, "api_id"))
        self.assertEqual(self.ref(integ, "integration_uri"), "aws_lambda_function.fn[api].invoke_arn")
        keys = self.routes_to("api")
        self.assertEqual(HTTP_ROUTES - keys, set(), "HTTP routes missing or not on the api integration")
        self.assertEqual(keys - HTTP_ROUTES, set(), "HTTP routes this test does not know of")
        for body in self.res["aws_apigatewayv2_route"].values():
            if self.route_keys(body) & HTTP_ROUTES:
                self.assertIn("aws_apigatewayv2_api.http.id", self.ref(body, "api_id"))
        stage = self.res["aws_apigatewayv2_stage"]["http"]
        self.assertEqual(self.attr(stage, "name"), "$default")
        self.assertIs(self.attr(stage, "auto_deploy"), True)
        self.assertTrue(block_list(stage.get("access_log_settings", [])), "HTTP stage has no access logs")

    def test_websocket_routes_target_ws_function(self):
        api = self.res["aws_apigatewayv2_api"]["ws"]
        self.assertEqual(self.attr(api, "protocol_type"), "WEBSOCKET")
        self.assertTrue(str(self.attr(api, "route_selection_expression")).startswith("$request.body."))
        integ = self.res["aws_apigatewayv2_integration"]["ws"]
        self.assertEqual(self.attr(integ, "integration_type"), "AWS_PROXY")
        self.assertIn("aws_apigatewayv2_api.ws.id", self.ref(integ, "api_id"))
        self.assertEqual(self.ref(integ, "integration_uri"), "aws_lambda_function.fn[ws].invoke_arn")
        self.assertEqual(self.routes_to("ws"), WS_ROUTES)
        stage = self.res["aws_apigatewayv2_stage"]["ws"]
        self.assertTrue(block_list(stage.get("access_log_settings", [])), "WebSocket stage has no access logs")

    def test_lambda_permissions_scoped_to_apis(self):
        seen = {}
        for body in self.res["aws_lambda_permission"].values():
            key = (self.ref(body, "function_name"), self.attr(body, "principal"))
            self.assertNotIn(key, seen, f"two permissions for {key}")
            seen[key] = self.ref(body, "source_arn")
        self.assertEqual(
            set(seen),
            {
                ("aws_lambda_function.fn[api].function_name", "apigateway.amazonaws.com"),
                ("aws_lambda_function.fn[ws].function_name", "apigateway.amazonaws.com"),
                ("aws_lambda_function.fn[merge].function_name", "events.amazonaws.com"),
            },
            "API Gateway invokes api and ws, EventBridge merge (the sweep); nothing else",
        )
        self.assertIn("aws_apigatewayv2_api.http.execution_arn",
                      seen[("aws_lambda_function.fn[api].function_name", "apigateway.amazonaws.com")])
        self.assertIn("aws_apigatewayv2_api.ws.execution_arn",
                      seen[("aws_lambda_function.fn[ws].function_name", "apigateway.amazonaws.com")])
        self.assertEqual(seen[("aws_lambda_function.fn[merge].function_name", "events.amazonaws.com")],
                         "aws_cloudwatch_event_rule.sweep.arn", "only the sweep rule may invoke merge")

    def test_sweep_schedule_invokes_merge(self):
        rules = self.res.get("aws_cloudwatch_event_rule", {})
        self.assertEqual(set(rules), {"sweep"})
        rule = rules["sweep"]
        self.assertEqual(self.ref(rule, "schedule_expression"), "var.sweep_schedule")
        self.assertNotIn("event_pattern", rule, "a schedule, not a pattern")
        self.assertEqual(unwrap(self.vars["sweep_schedule"]["default"]), "rate(5 minutes)")
        targets = self.res.get("aws_cloudwatch_event_target", {})
        self.assertEqual(len(targets), 1)
        target = next(iter(targets.values()))
        self.assertEqual(self.ref(target, "rule"), "aws_cloudwatch_event_rule.sweep.name")
        self.assertEqual(self.ref(target, "arn"), "aws_lambda_function.fn[merge].arn")
        # The function tells a sweep from a merge job by the scheduled event's detail-type, so
        # the event goes through as EventBridge makes it.
        for key in ("input", "input_path", "input_transformer"):
            self.assertNotIn(key, target, f"the target must not replace the event ({key})")
        # The sweep has the merge function's timeout (a pass may delete many objects).
        self.assertEqual(self.number(value(self.settings("merge")["timeout"])), 900)

    def test_sweep_schedule_validation(self):
        cond = self.attr(block_list(self.vars["sweep_schedule"]["validation"])[0], "condition")
        m = re.search(r'regex\("(.+)",\s*var\.sweep_schedule\)', cond)
        self.assertTrue(m, f"sweep_schedule validation is not a regex: {cond!r}")
        pattern = m.group(1).replace("\\\\", "\\")
        for good in ("rate(5 minutes)", "rate(1 minute)", "rate(2 hours)", "rate(1 day)", "cron(0/5 * * * ? *)"):
            self.assertRegex(good, pattern)
        for bad in ("rate(1 minutes)", "rate(5 minute)", "rate(0 minutes)", "5 minutes", "rate(5 minutes) "):
            self.assertNotRegex(bad, pattern)

    def test_sweep_settings_reach_every_function(self):
        for name in FUNCTIONS:
            with self.subTest(function=name):
                env = self.env(name)
                self.assertEqual(env["ABANDON_AFTER_SECS"], "tostring(var.abandon_after_secs)")
                self.assertEqual(env["ABANDONED"], "var.abandoned")
                # Only through local.retention_env, which omits it when retention_days is null.
                self.assertNotIn("RETENTION_DAYS", env)
                # The server's in-process sweeper settings; the schedule replaces the interval.
                self.assertNotIn("SWEEP_INTERVAL_SECS", env)
                self.assertNotIn("SHUTDOWN_GRACE_SECS", env)
        # Not norm(): it drops the braces the empty object is made of. Inner ${…} first, then
        # the outer one.
        retention = re.sub(r"[\\\"' ]", "", str(self.local("retention_env")))
        retention = re.sub(r"\$\{([^{}]*)\}", r"\1", retention)
        if retention.startswith("${") and retention.endswith("}"):
            retention = retention[2:-1]
        self.assertRegex(
            retention,
            r"^var\.retention_days==(null|None)\?\{\}:\{RETENTION_DAYS[:=]tostring\(var\.retention_days\)\}$",
        )
        self.assertIsNone(unwrap(self.vars["retention_days"]["default"]), "unset keeps recordings for ever")
        self.assertEqual(unwrap(self.vars["abandon_after_secs"]["default"]), 3600)
        self.assertEqual(unwrap(self.vars["abandoned"]["default"]), "merge")
        abandoned = self.attr(block_list(self.vars["abandoned"]["validation"])[0], "condition")
        self.assertRegex(re.sub(r"[ ']", "", norm(abandoned)), r"contains\(\[merge,delete\],var\.abandoned\)")
        # A conditional: a null must not reach the comparison.
        condition = norm(self.attr(block_list(self.vars["retention_days"]["validation"])[0], "condition"))
        self.assertRegex(condition, r"^var\.retention_days == (null|None) \? (true|True) : .*var\.retention_days >= 1")
        # The removed lifecycle retention refuses a value rather than ignoring it.
        self.assertIsNone(unwrap(self.vars["recording_retention_days"]["default"]))
        guard = norm(self.attr(block_list(self.vars["recording_retention_days"]["validation"])[0], "condition"))
        self.assertRegex(guard, r"^var\.recording_retention_days == (null|None)$")

    def test_one_function_resource_per_settings_entry(self):
        fn = self.fn_resource()
        self.assertEqual(set(self.res["aws_lambda_function"]), {"fn"}, "functions outside aws_lambda_function.fn")
        self.assertEqual(self.ref(fn, "for_each"), "local.functions")
        self.assertEqual(set(k for k in self.local("functions") if not k.startswith("__")), set(FUNCTIONS))
        self.assertEqual(set(k for k in self.local("function_names") if not k.startswith("__")), set(FUNCTIONS))
        self.assertEqual(self.ref(fn, "function_name"), "local.function_names[each.key]")
        self.assertEqual(self.ref(fn, "filename"), "each.value.zip")
        self.assertEqual(self.ref(fn, "source_code_hash"), "filebase64sha256(each.value.zip)")
        self.assertEqual(self.ref(fn, "memory_size"), "each.value.memory_mb")
        self.assertEqual(self.ref(fn, "timeout"), "each.value.timeout")
        self.assertEqual(self.ref(fn, "layers"), "each.value.layers")
        self.assertEqual(self.ref(fn, "reserved_concurrent_executions"), "each.value.reserved_concurrency")
        for name in FUNCTIONS:
            s = self.settings(name)
            self.assertEqual(norm(str(value(s["zip"]))), f"var.{name}_zip", name)
            self.assertEqual(norm(str(value(s["memory_mb"]))), f"var.{name}_memory_mb", name)
            self.assertEqual(norm(str(value(s["reserved_concurrency"]))), f"var.reserved_concurrency.{name}", name)
        self.assertEqual(self.ref(self.res["aws_cloudwatch_log_group"]["fn"], "for_each"), "local.function_names")
        deps = {norm(d) for d in strings(fn.get("depends_on", []))}
        self.assertIn("aws_iam_role_policy.fn", deps, "functions must wait for their policies")

    def test_moved_from_per_function_resources(self):
        moved = {}
        for doc in self.docs.values():
            for m in doc.get("moved", []):
                moved[norm(str(unwrap(m["from"])))] = norm(str(unwrap(m["to"])))
        for name in FUNCTIONS:
            self.assertEqual(moved.get(f"aws_lambda_function.{name}"), f"aws_lambda_function.fn[{name}]")
            self.assertEqual(moved.get(f"aws_iam_role_policy.{name}"), f"aws_iam_role_policy.fn[{name}]")

    def test_functions_runtime_tracing_and_env(self):
        fn = self.fn_resource()
        self.assertEqual(self.attr(fn, "runtime"), "provided.al2023")
        self.assertEqual(self.attr(fn, "handler"), "bootstrap")
        self.assertEqual(norm(str(unwrap(fn["architectures"]))), "var.lambda_architecture")
        self.assertEqual(self.attr(block_list(fn["tracing_config"])[0], "mode"), "Active")
        self.assertEqual(self.ref(fn, "kms_key_arn"), "aws_kms_key.main.arn")
        for name in FUNCTIONS:
            with self.subTest(function=name):
                env = self.env(name)
                self.assertEqual(set(ENV_VARS[name]) - set(env), set(), f"{name} lacks variables")
                self.assertEqual(env["STORAGE"], "s3")
                self.assertEqual(env["S3_BUCKET"], "aws_s3_bucket.recordings.bucket")
                self.assertEqual(env["REDIS_URL"], "local.redis_url")
                self.assertEqual(env["LOG_FORMAT"], "json")
                self.assertEqual(env["APIGW_MANAGEMENT_ENDPOINT"], "local.apigw_management_endpoint")
                self.assertNotIn("SQS_ENDPOINT", env, "SQS_ENDPOINT is for LocalStack only")
                self.assertNotIn("S3_ENDPOINT", env)

    def test_api_function(self):
        env = self.env("api")
        self.assertEqual(env["MERGE_QUEUE_URL"], "aws_sqs_queue.merge.url")
        self.assertEqual(env["APIGW_MANAGEMENT_ENDPOINT"], "local.apigw_management_endpoint")
        self.assertLessEqual(self.number(value(self.settings("api")["timeout"])), 30)
        self.assertEqual(self.actions_on("api", "execute-api:ManageConnections"), {"local.ws_connections_arn"})
        self.assertEqual(self.actions_on("api", "sqs:SendMessage"), {"aws_sqs_queue.merge.arn"})

    def test_every_function_requeues_to_the_merge_queue(self):
        # A rebuild (any function) and the sweep (merge) re-queue merges. Without MERGE_QUEUE_URL
        # the job would go to a Redis Stream, which nothing consumes in this deployment.
        for name in FUNCTIONS:
            with self.subTest(function=name):
                self.assertEqual(self.env(name)["MERGE_QUEUE_URL"], "aws_sqs_queue.merge.url")
                self.assertEqual(self.actions_on(name, "sqs:SendMessage"), {"aws_sqs_queue.merge.arn"})

    def actions_on(self, function, action):
        """The resources the function's policy allows `action` on."""
        return {r for _, a, res in self.statements(function) if action in a for r in res}

    def test_ws_function(self):
        env = self.env("ws")
        self.assertEqual(env["STORAGE"], "s3")
        self.assertEqual(env["S3_BUCKET"], "aws_s3_bucket.recordings.bucket")
        self.assertEqual(env["APIGW_MANAGEMENT_ENDPOINT"], "local.apigw_management_endpoint")
        self.assertEqual(self.actions_on("ws", "execute-api:ManageConnections"), {"local.ws_connections_arn"})
        writes = {a for a in self.actions("ws") if a.startswith("s3:")} - {"s3:GetObject", "s3:ListBucket"}
        self.assertEqual(writes, set(), "ws does not write the bucket")

    def test_management_endpoint_and_connections(self):
        endpoint = norm(str(self.local("apigw_management_endpoint")))
        self.assertRegex(
            endpoint,
            r"^https://aws_apigatewayv2_api\.ws\.id\.execute-api\.local\.region\.amazonaws\.com/var\.ws_stage_name$",
        )
        self.assertEqual(
            norm(str(self.local("ws_connections_arn"))),
            "aws_apigatewayv2_api.ws.execution_arn/var.ws_stage_name/POST/@connections/*",
        )
        self.assertEqual(self.attr(self.res["aws_apigatewayv2_stage"]["ws"], "name"), "${var.ws_stage_name}")

    def test_merge_function(self):
        merge = self.settings("merge")
        self.assertEqual(self.number(value(merge["timeout"])), 900)
        self.assertEqual([norm(s) for s in strings(merge["layers"])], ["aws_lambda_layer_version.ffmpeg.arn"])
        for name in ("api", "ws"):
            self.assertEqual(list(strings(self.settings(name)["layers"])), [], f"{name} needs no layer")
            self.assertIsNone(value(self.settings(name)["ephemeral_storage_mb"]), name)
        self.assertEqual(norm(str(value(merge["ephemeral_storage_mb"]))), "var.merge_ephemeral_storage_mb")
        # /tmp size: a dynamic block over each.value.ephemeral_storage_mb
        dynamic = {}
        for d in block_list(self.fn_resource().get("dynamic", [])):
            dynamic.update(d)
        self.assertIn("ephemeral_storage", dynamic)
        storage = block_list(dynamic["ephemeral_storage"])[0]
        self.assertIn("each.value.ephemeral_storage_mb", self.ref(storage, "for_each"))
        self.assertEqual(self.ref(block_list(storage["content"])[0], "size"), "ephemeral_storage.value")
        layer = self.res["aws_lambda_layer_version"]["ffmpeg"]
        self.assertIn("provided.al2023", set(strings(layer["compatible_runtimes"])))
        env = self.env("merge")
        self.assertEqual(env["FFMPEG_PATH"], "/opt/bin/ffmpeg")
        self.assertEqual(env["MERGE_WORK_DIR"], "/tmp")
        # Two mappings feed merge: the merge queue's and (webhooks.tf) the webhook queue's.
        mappings = [
            b
            for b in self.res["aws_lambda_event_source_mapping"].values()
            if self.ref(b, "function_name").startswith("aws_lambda_function.fn[merge].")
            and self.ref(b, "event_source_arn") == "aws_sqs_queue.merge.arn"
        ]
        self.assertEqual(len(mappings), 1, "merge needs exactly one event source mapping on the merge queue")
        esm = mappings[0]
        self.assertNotIn("count", esm, "the merge queue's mapping always exists")
        self.assertEqual(self.number(self.attr(esm, "batch_size")), 1)
        self.assertIn("ReportBatchItemFailures", set(strings(esm["function_response_types"])))

    def test_merge_max_deliveries_is_the_redrive_count(self):
        self.assertEqual(self.env("merge")["MERGE_MAX_DELIVERIES"], "tostring(var.merge_max_receive_count)")
        redrive = norm(" ".join(strings(self.res["aws_sqs_queue"]["merge"]["redrive_policy"])))
        self.assertRegex(redrive, r"maxReceiveCount\W+var\.merge_max_receive_count\b")

    def test_merge_queue_redrive_and_visibility(self):
        q = self.res["aws_sqs_queue"]["merge"]
        redrive = " ".join(strings(q["redrive_policy"]))
        self.assertIn("aws_sqs_queue.merge_dlq.arn", norm(redrive))
        visibility = self.number(self.attr(q, "visibility_timeout_seconds"))
        self.assertGreaterEqual(visibility, self.number(value(self.settings("merge")["timeout"])))
        for name in ("merge", "merge_dlq"):
            self.assertIs(self.attr(self.res["aws_sqs_queue"][name], "sqs_managed_sse_enabled"), True)

    def test_function_policies_have_needed_actions(self):
        for function, needed in REQUIRED_ACTIONS.items():
            with self.subTest(function=function):
                self.assertEqual(needed - self.actions(function), set(), f"{function} policy lacks actions")
                logs = self.actions_on(function, "logs:PutLogEvents")
                self.assertEqual(logs, {"aws_cloudwatch_log_group.fn[each.key].arn:*"}, "own log group only")

    def test_s3_resources_within_chunks_recordings_and_active(self):
        bucket = "aws_s3_bucket.recordings.arn"
        self.assertEqual(norm(str(self.local("chunk_objects_arn"))), f"{bucket}/chunks/*")
        self.assertEqual(norm(str(self.local("recordings_objects_arn"))), f"{bucket}/recordings/*")
        self.assertEqual(norm(str(self.local("active_objects_arn"))), f"{bucket}/active/*")
        for function in FUNCTIONS:
            with self.subTest(function=function):
                access, on_bucket = {}, set()
                for doc, actions, resources in self.statements(function):
                    s3 = {a for a in actions if a.startswith("s3:")}
                    if not s3:
                        continue
                    self.assertEqual(s3, actions, f"{doc}: S3 and other actions in one statement")
                    if s3 <= BUCKET_ACTIONS:
                        self.assertEqual(resources, [bucket], f"{doc}: {s3}")
                        on_bucket |= s3
                        continue
                    self.assertFalse(s3 & BUCKET_ACTIONS, f"{doc}: bucket and object actions mixed")
                    self.assertTrue(resources, doc)
                    for r in resources:
                        self.assertIn(r, (CHUNKS, RECORDINGS, ACTIVE),
                                      f"{doc}: {r} is outside chunks/*, recordings/* and active/*")
                        access.setdefault(r, set()).update(s3)
                self.assertEqual(access, OBJECT_ACCESS[function])
                self.assertEqual(on_bucket, BUCKET_ACCESS[function])

    def test_no_wildcard_actions(self):
        for name, doc in self.data["aws_iam_policy_document"].items():
            for st in block_list(doc.get("statement", [])):
                for key in ("actions", "not_actions"):
                    for a in strings(st.get(key, [])):
                        self.assertNotIn(a, ("*", "s3:*"), f"data.aws_iam_policy_document.{name}")
        # jsonencode()d policies and anything else in the raw text
        for fname, text in self.raw.items():
            self.assertNotRegex(text, r'"s3:\*"', fname)
            self.assertNotRegex(text, r'(?i)"?actions?"?\s*[=:]\s*\[?\s*"\*"', fname)

    def test_no_chunk_tagging(self):
        # Chunks have their own prefix: no tag selects them, so nothing may tag objects.
        for fname, text in self.raw.items():
            self.assertNotIn("PutObjectTagging", text, fname)
            self.assertNotIn("screenrec-kind", text, fname)

    def test_bucket_public_access_block(self):
        blocks = [
            b
            for b in self.res["aws_s3_bucket_public_access_block"].values()
            if self.ref(b, "bucket").startswith("aws_s3_bucket.recordings.")
        ]
        self.assertEqual(len(blocks), 1)
        for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
            self.assertIs(self.attr(blocks[0], flag), True, flag)

    def test_bucket_lifecycle(self):
        lc = self.res["aws_s3_bucket_lifecycle_configuration"]["recordings"]
        self.assertTrue(self.ref(lc, "bucket").startswith("aws_s3_bucket.recordings."))
        rules = {self.attr(r, "id"): r for r in block_list(lc["rule"])}
        self.assertEqual(set(rules), {"abort-incomplete-multipart-uploads", "expire-chunks"})
        # The second line of defence behind the sweep's own aborts.
        abort = rules["abort-incomplete-multipart-uploads"]
        self.assertEqual(self.attr(abort, "status"), "Enabled")
        self.assertEqual(self.number(self.attr(block_list(abort["abort_incomplete_multipart_upload"])[0],
                                               "days_after_initiation")), 1)
        rule = rules["expire-chunks"]
        self.assertEqual(self.attr(rule, "status"), "Enabled")
        filt = block_list(rule["filter"])[0]
        self.assertEqual({k for k in filt if not k.startswith("__")}, {"prefix"}, "a plain prefix filter")
        self.assertEqual(self.attr(filt, "prefix"), "chunks/")
        self.assertEqual(self.ref(block_list(rule["expiration"])[0], "days"), "var.chunk_retention_days")
        # An abandoned recording's chunks outlive the wait before the sweeper merges them.
        conditions = [norm(self.attr(p, "condition"))
                      for lb in block_list(lc.get("lifecycle", [])) for p in block_list(lb.get("precondition", []))]
        self.assertTrue(any("var.abandon_after_secs" in c and "var.chunk_retention_days" in c for c in conditions),
                        "no precondition ties chunk_retention_days to abandon_after_secs")

    def test_no_lifecycle_rule_deletes_recordings_or_markers(self):
        # The manifest is the durable record and active/ the sweeper's list of unfinished
        # recordings: only retention_days, through the sweeper, removes them. A rule deletes
        # objects when it has an expiration, a noncurrent-version expiration or a transition
        # (not deleting, but not for objects this short-lived either); it may only do so under a
        # prefix inside chunks/.
        deleting = ("expiration", "noncurrent_version_expiration", "transition", "noncurrent_version_transition")
        for lc_name, lc in self.res["aws_s3_bucket_lifecycle_configuration"].items():
            for rule in block_list(lc["rule"]):
                rule_id = self.attr(rule, "id")
                with self.subTest(configuration=lc_name, rule=rule_id):
                    if not any(k in rule for k in deleting):
                        continue
                    prefixes = [unquote(p) for f in block_list(rule.get("filter", [])) for p in strings(f.get("prefix", []))]
                    prefixes += [unquote(p) for f in block_list(rule.get("filter", []))
                                 for a in block_list(f.get("and", [])) for p in strings(a.get("prefix", []))]
                    self.assertTrue(prefixes, f"{rule_id} deletes objects bucket-wide")
                    for p in prefixes:
                        self.assertTrue(p.startswith("chunks/"), f"{rule_id} deletes under {p!r}")
        for fname, text in self.raw.items():
            self.assertNotRegex(text, r'prefix\s*=\s*"(recordings|active)/', f"{fname}: a rule on recordings/ or active/")

    def test_bucket_encryption_and_cors(self):
        sse = self.res["aws_s3_bucket_server_side_encryption_configuration"]["recordings"]
        algos = set(strings(sse))
        self.assertTrue(algos & {"aws:kms", "AES256"})
        cors = self.res["aws_s3_bucket_cors_configuration"]["recordings"]
        rule = block_list(cors["cors_rule"])[0]
        self.assertEqual(norm(str(unwrap(rule["allowed_origins"]))), "var.cors_allowed_origins")
        self.assertIn("PUT", set(strings(rule["allowed_methods"])))

    def test_variables_documented_and_typed(self):
        self.assertTrue(self.vars)
        for name, body in self.vars.items():
            with self.subTest(variable=name):
                self.assertIn("description", body)
                self.assertTrue(str(unwrap(body["description"])).strip())
                self.assertIn("type", body)
        for name in ("region", "cors_allowed_origins", "log_retention_days", "lambda_architecture",
                     "merge_memory_mb", "merge_ephemeral_storage_mb", "recording_retention_days",
                     "retention_days", "abandon_after_secs", "abandoned", "sweep_schedule"):
            self.assertIn("validation", self.vars[name], f"{name} needs a validation block")
        self.assertIs(unwrap(self.vars["redis_url"]["sensitive"]), True)

    def test_tfvars_example_sets_declared_variables(self):
        with open(os.path.join(TF_DIR, "terraform.tfvars.example"), encoding="utf-8") as fh:
            example = {k: unwrap(v) for k, v in hcl2.load(fh).items() if not k.startswith("__")}
        self.assertEqual(set(example) - set(self.vars), set(), "the example sets undeclared variables")
        self.assertNotIn("recording_retention_days", example, "replaced by retention_days")
        self.assertNotIn("webhook_secret", example, "the secret stays out of tfvars files (TF_VAR_webhook_secret)")
        for name in ("retention_days", "sweep_schedule", "abandon_after_secs", "abandoned"):
            self.assertIn(name, example)
        self.assertIn(example["abandoned"], ("merge", "delete"))
        # The lifecycle precondition (s3.tf).
        self.assertLessEqual(example["abandon_after_secs"] + 3600, example["chunk_retention_days"] * 86400)

    # webhooks (webhooks.tf): a queue, its DLQ and a second mapping to merge, only when an
    # endpoint is configured

    WEBHOOKS_COUNT = "local.webhooks_enabled ? 1 : 0"

    def test_webhooks_enabled_by_an_endpoint(self):
        self.assertEqual(norm(str(self.local("webhooks_enabled"))),
                         'var.webhook_url != "" || var.webhook_tenant_urls != ""'.replace('"', ""))
        for typ, name in (("aws_sqs_queue", "webhooks"), ("aws_sqs_queue", "webhooks_dlq"),
                          ("aws_sqs_queue_redrive_allow_policy", "webhooks_dlq"),
                          ("aws_lambda_event_source_mapping", "webhooks")):
            with self.subTest(resource=f"{typ}.{name}"):
                self.assertEqual(self.ref(self.res[typ][name], "count"), self.WEBHOOKS_COUNT)

    def test_webhook_queue(self):
        q = self.res["aws_sqs_queue"]["webhooks"]
        self.assertIs(self.attr(q, "sqs_managed_sse_enabled"), True)
        self.assertIs(self.attr(self.res["aws_sqs_queue"]["webhooks_dlq"], "sqs_managed_sse_enabled"), True)
        # The merge function consumes it: at least its timeout (Lambda refuses less), 6x by
        # AWS's rule for SQS event sources.
        merge_timeout = self.number(value(self.settings("merge")["timeout"]))
        self.assertGreaterEqual(self.number(self.attr(q, "visibility_timeout_seconds")), 6 * merge_timeout)
        self.assertGreaterEqual(self.number(self.attr(q, "message_retention_seconds")), 4 * 86400)
        # SendMessage's DelaySeconds (up to 900) is per message; a queue delay would add to it.
        self.assertEqual(self.number(q.get("delay_seconds", [0])[0]), 0)
        redrive = norm(" ".join(strings(q["redrive_policy"])))
        self.assertIn("aws_sqs_queue.webhooks_dlq[0].arn", redrive)
        m = re.search(r"maxReceiveCount\W+local\.(\w+)", redrive)
        self.assertTrue(m, f"maxReceiveCount: {redrive}")
        self.assertTrue(1 <= self.number(self.local(m.group(1))) <= 10)
        # The plan fails, rather than the functions at start, when an endpoint has no secret.
        conditions = [norm(self.attr(p, "condition"))
                      for lb in block_list(q.get("lifecycle", [])) for p in block_list(lb.get("precondition", []))]
        self.assertTrue(any("var.webhook_secret" in c for c in conditions), "no precondition requires webhook_secret")

    def test_webhook_mapping_to_merge(self):
        esm = self.res["aws_lambda_event_source_mapping"]["webhooks"]
        self.assertEqual(self.ref(esm, "event_source_arn"), "aws_sqs_queue.webhooks[0].arn")
        self.assertEqual(self.ref(esm, "function_name"), "aws_lambda_function.fn[merge].arn")
        self.assertEqual(set(strings(esm["function_response_types"])), {"ReportBatchItemFailures"})
        # Attempts are made one after another within the merge function's timeout.
        self.assertTrue(1 <= self.number(self.attr(esm, "batch_size")) <= 10)
        scaling = block_list(esm.get("scaling_config", []))
        self.assertTrue(scaling, "the webhook mapping needs its own concurrency cap")
        self.assertEqual(self.ref(scaling[0], "maximum_concurrency"), "var.webhook_max_concurrency")
        deps = {norm(d) for d in strings(esm.get("depends_on", []))}
        self.assertIn("aws_iam_role_policy.fn", deps, "the role must read the queue before the mapping exists")

    def test_webhook_env_reaches_every_function(self):
        # Not norm(): it drops the braces the objects are made of (see retention_env).
        env = re.sub(r"[\s'\"\\]", "", str(self.local("webhook_env")))
        env = re.sub(r"\$\{([^{}]*)\}", r"\1", env)
        if env.startswith("${") and env.endswith("}"):
            env = env[2:-1]
        self.assertTrue(env.startswith("local.webhooks_enabled?merge("), env)
        self.assertTrue(env.endswith(":{}"), "no webhook variable without webhooks")
        self.assertIn("{WEBHOOK_QUEUE_URL:aws_sqs_queue.webhooks[0].url}", env)
        # Each only when set.
        for name, var in (("WEBHOOK_SECRET", "webhook_secret"), ("WEBHOOK_URL", "webhook_url"),
                          ("WEBHOOK_TENANT_URLS", "webhook_tenant_urls")):
            self.assertIn(f"var.{var}==?{{}}:{{{name}:var.{var}}}", env)
        self.assertIn("var.webhook_allow_private?{WEBHOOK_ALLOW_PRIVATE:true}:{}", env)
        # Not in local.functions (for_each refuses the sensitive secret) nor in common_env.
        for name in FUNCTIONS:
            with self.subTest(function=name):
                self.assertFalse([k for k in self.env(name) if k.startswith("WEBHOOK_")])

    def test_webhook_grants(self):
        send = ("EnqueueWebhooks", {"sqs:SendMessage"})
        consume = ("ConsumeWebhookQueue", {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"})
        # Every function emits events; only merge consumes the queue.
        expected = {"api": [send], "ws": [send], "merge": [consume, send]}
        for function, grants in expected.items():
            with self.subTest(function=function):
                dynamic = self.dynamic_statements(function)
                self.assertEqual(sorted((sid, sorted(a)) for _, _, sid, a, _ in dynamic),
                                 sorted((sid, sorted(a)) for sid, a in grants))
                for doc, for_each, sid, _, resources in dynamic:
                    self.assertEqual(for_each, "aws_sqs_queue.webhooks", f"{doc}.{sid}: only with the queue")
                    self.assertEqual(resources, ["statement.value.arn"], f"{doc}.{sid}")

    def test_policy_sids_unique(self):
        # The provider refuses a document with two statements of one Sid (at apply: the
        # documents depend on resources the plan creates), merged documents included.
        for function in FUNCTIONS:
            with self.subTest(function=function):
                sids = [unwrap(st["sid"]) for _, doc in self.policy_docs(function)
                        for st in block_list(doc.get("statement", [])) if "sid" in st]
                sids += [sid for _, _, sid, _, _ in self.dynamic_statements(function) if sid]
                self.assertEqual(sorted(sids), sorted(set(sids)), f"{function}: duplicate Sid")

    def test_webhook_variables(self):
        for name, default in (("webhook_url", ""), ("webhook_secret", ""), ("webhook_tenant_urls", ""),
                              ("webhook_allow_private", False)):
            with self.subTest(variable=name):
                self.assertIn(name, self.vars)
                self.assertEqual(unwrap(self.vars[name]["default"]), default)
        self.assertIs(unwrap(self.vars["webhook_secret"]["sensitive"]), True)
        self.assertEqual(norm(str(unwrap(self.vars["webhook_allow_private"]["type"]))), "bool")
        for name in ("webhook_url", "webhook_tenant_urls", "webhook_secret", "webhook_max_concurrency"):
            self.assertIn("validation", self.vars[name], f"{name} needs a validation block")
        conditions = " ".join(norm(self.attr(v, "condition")) for v in block_list(self.vars["webhook_secret"]["validation"]))
        self.assertIn("whsec_", conditions)

    def test_webhook_secret_validation(self):
        # The regex and size rule of the second validation, against secrets the functions accept
        # and refuse (WebhookSecret::parse: standard padded base64 of 24 bytes or more).
        import base64
        cond = [self.attr(v, "condition") for v in block_list(self.vars["webhook_secret"]["validation"])
                if "regex" in self.attr(v, "condition")]
        self.assertEqual(len(cond), 1)
        m = re.search(r'regex\("(\^whsec_.+?\$)",\s*var\.webhook_secret\)', cond[0])
        self.assertTrue(m, cond[0])
        pattern = m.group(1).replace("\\\\", "\\")

        def accepted(secret):
            encoded = secret[len("whsec_"):]
            return (re.fullmatch(pattern, secret) is not None
                    and len(encoded) // 4 * 3 - (len(encoded) - len(encoded.rstrip("="))) >= 24)

        for n in (24, 25, 26, 32, 64):
            self.assertTrue(accepted("whsec_" + base64.b64encode(bytes(range(n))).decode()), n)
        for n in (16, 22, 23):
            self.assertFalse(accepted("whsec_" + base64.b64encode(bytes(range(n))).decode()), n)
        self.assertFalse(accepted("whsec_" + base64.b64encode(bytes(32)).decode().rstrip("=")), "unpadded")
        self.assertFalse(accepted("whsec_" + base64.urlsafe_b64encode(b"\xff" * 33).decode()), "URL-safe alphabet")

    def test_outputs(self):
        outputs = set()
        for doc in self.docs.values():
            for entry in doc.get("output", []):
                outputs |= {unquote(k) for k in entry}
        self.assertEqual(
            {"http_api_url", "websocket_url", "bucket_name", "merge_queue_url", "dlq_url", "webhook_queue_url",
             "webhook_dlq_url"} - outputs, set()
        )


if __name__ == "__main__":
    unittest.main()
