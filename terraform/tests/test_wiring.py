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
    "POST /recordings",
    "GET /recordings/{id}",
    "POST /recordings/{id}/chunks",
    "PUT /recordings/{id}/chunks/{seq}",
    "POST /recordings/{id}/chunks/{seq}/complete",
    "POST /recordings/{id}/stop",
    "GET /recordings/{id}/download",
    "GET /healthz",
    "GET /readyz",
    "GET /openapi.json",
}
WS_ROUTES = {"$connect", "$disconnect", "$default"}

ENV_VARS = {
    "api": ("STORAGE", "S3_BUCKET", "REDIS_URL", "REDIS_PREFIX", "LOG_FORMAT", "PRESIGN_TTL_SECS",
            "MAX_CHUNK_BYTES", "MERGE_QUEUE_URL"),
    "ws": ("REDIS_URL", "REDIS_PREFIX", "APIGW_MANAGEMENT_ENDPOINT", "LOG_FORMAT"),
    "merge": ("FFMPEG_PATH", "MERGE_WORK_DIR", "S3_BUCKET", "REDIS_URL", "REDIS_PREFIX",
              "APIGW_MANAGEMENT_ENDPOINT", "LOG_FORMAT"),
}

REQUIRED_ACTIONS = {
    "api": {"s3:PutObject", "s3:GetObject", "sqs:SendMessage"},
    "ws": {"execute-api:ManageConnections"},
    "merge": {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "execute-api:ManageConnections",
    },
}


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

    def number(self, value):
        """Evaluate a number, a local reference or simple arithmetic over locals."""
        if isinstance(value, (int, float)):
            return value
        expr = norm(str(value))

        def local(m):
            return str(self.number(unwrap(self.locals[m.group(1)])))

        expr = re.sub(r"local\.(\w+)", local, expr)
        self.assertRegex(expr, r"^[0-9 +*()-]+$", f"cannot evaluate {value!r}")
        return eval(expr)  # digits and operators only, checked above

    def env_text(self, fn):
        """The function's environment block as text, with the locals it merges in expanded."""
        text = str(unwrap(block_list(fn["environment"])[0]["variables"]))
        for m in re.findall(r"local\.(\w+)", text):
            text += " " + str(self.locals[m])
        return text

    def route_keys(self, route_body):
        key = norm(str(self.attr(route_body, "route_key")))
        if key in ("each.value", "each.key"):
            fe = norm(str(unwrap(route_body["for_each"])))
            m = re.search(r"local\.(\w+)", fe)
            self.assertTrue(m, f"for_each {fe!r} is not a local list")
            return set(strings(self.locals[m.group(1)]))
        return {key}

    def routes_to(self, integration_name):
        keys = set()
        for body in self.res.get("aws_apigatewayv2_route", {}).values():
            target = norm(str(self.attr(body, "target")))
            if f"aws_apigatewayv2_integration.{integration_name}.id" in target:
                keys |= self.route_keys(body)
        return keys

    def policy_actions(self, function):
        """Actions of every Allow statement in the inline policies of a function's role."""
        fn = self.res["aws_lambda_function"][function]
        role_ref = norm(str(self.attr(fn, "role")))
        m = re.match(r"(aws_iam_role\.\w+(\[\w+\])?)\.arn$", role_ref)
        self.assertTrue(m, f"{function}: role {role_ref!r} is not an aws_iam_role reference")
        role = m.group(1)
        actions = set()
        found = False
        for body in self.res.get("aws_iam_role_policy", {}).values():
            if not norm(str(self.attr(body, "role"))).startswith(role + "."):
                continue
            policy = norm(str(self.attr(body, "policy")))
            pm = re.match(r"data\.aws_iam_policy_document\.(\w+)\.json$", policy)
            self.assertTrue(pm, f"{function}: policy {policy!r} is not a policy document")
            doc = self.data["aws_iam_policy_document"][pm.group(1)]
            for st in block_list(doc.get("statement", [])):
                if unwrap(st.get("effect", "Allow")) == "Allow":
                    actions |= set(strings(st.get("actions", [])))
            found = True
        self.assertTrue(found, f"{function}: no aws_iam_role_policy on {role}")
        return actions

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
        self.assertIn("aws_apigatewayv2_api.http.id", norm(self.attr(integ, "api_id")))
        self.assertEqual(norm(self.attr(integ, "integration_uri")), "aws_lambda_function.api.invoke_arn")
        keys = self.routes_to("api")
        self.assertEqual(HTTP_ROUTES - keys, set(), "HTTP routes missing or not on the api integration")
        for body in self.res["aws_apigatewayv2_route"].values():
            if self.route_keys(body) & HTTP_ROUTES:
                self.assertIn("aws_apigatewayv2_api.http.id", norm(self.attr(body, "api_id")))
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
        self.assertIn("aws_apigatewayv2_api.ws.id", norm(self.attr(integ, "api_id")))
        self.assertEqual(norm(self.attr(integ, "integration_uri")), "aws_lambda_function.ws.invoke_arn")
        self.assertEqual(WS_ROUTES - self.routes_to("ws"), set())
        stage = self.res["aws_apigatewayv2_stage"]["ws"]
        self.assertTrue(block_list(stage.get("access_log_settings", [])), "WebSocket stage has no access logs")

    def test_lambda_permissions_scoped_to_apis(self):
        perms = self.res["aws_lambda_permission"]
        seen = {}
        for body in perms.values():
            self.assertEqual(self.attr(body, "principal"), "apigateway.amazonaws.com")
            fn = norm(self.attr(body, "function_name"))
            src = norm(self.attr(body, "source_arn"))
            seen[fn] = src
        self.assertIn("aws_apigatewayv2_api.http.execution_arn", seen["aws_lambda_function.api.function_name"])
        self.assertIn("aws_apigatewayv2_api.ws.execution_arn", seen["aws_lambda_function.ws.function_name"])

    def test_functions_runtime_and_tracing(self):
        for name in ("api", "ws", "merge"):
            fn = self.res["aws_lambda_function"][name]
            self.assertEqual(self.attr(fn, "runtime"), "provided.al2023", name)
            self.assertEqual(self.attr(fn, "handler"), "bootstrap", name)
            self.assertEqual(norm(str(unwrap(fn["architectures"]))), "var.lambda_architecture", name)
            tracing = block_list(fn["tracing_config"])[0]
            self.assertEqual(self.attr(tracing, "mode"), "Active", name)
            text = self.env_text(fn)
            for var in ENV_VARS[name]:
                self.assertRegex(text, r"\b%s\b" % var, f"{name} lacks {var}")

    def test_merge_function(self):
        fn = self.res["aws_lambda_function"]["merge"]
        self.assertEqual(self.number(self.attr(fn, "timeout")), 900)
        self.assertIn("aws_lambda_layer_version.ffmpeg.arn", [norm(s) for s in strings(fn["layers"])])
        layer = self.res["aws_lambda_layer_version"]["ffmpeg"]
        self.assertIn("provided.al2023", set(strings(layer["compatible_runtimes"])))
        storage = block_list(fn["ephemeral_storage"])[0]
        self.assertEqual(norm(str(self.attr(storage, "size"))), "var.merge_ephemeral_storage_mb")
        self.assertIn("/opt/bin/ffmpeg", self.env_text(fn))
        mappings = [
            b
            for b in self.res["aws_lambda_event_source_mapping"].values()
            if norm(self.attr(b, "function_name")).startswith("aws_lambda_function.merge.")
        ]
        self.assertEqual(len(mappings), 1, "merge needs exactly one event source mapping")
        esm = mappings[0]
        self.assertEqual(norm(self.attr(esm, "event_source_arn")), "aws_sqs_queue.merge.arn")
        self.assertEqual(self.number(self.attr(esm, "batch_size")), 1)

    def test_merge_queue_redrive_and_visibility(self):
        q = self.res["aws_sqs_queue"]["merge"]
        redrive = " ".join(strings(q["redrive_policy"]))
        self.assertIn("aws_sqs_queue.merge_dlq.arn", norm(redrive))
        self.assertIn("maxReceiveCount", redrive)
        visibility = self.number(self.attr(q, "visibility_timeout_seconds"))
        timeout = self.number(self.attr(self.res["aws_lambda_function"]["merge"], "timeout"))
        self.assertGreaterEqual(visibility, timeout)
        for name in ("merge", "merge_dlq"):
            self.assertIs(self.attr(self.res["aws_sqs_queue"][name], "sqs_managed_sse_enabled"), True)

    def test_function_policies_have_needed_actions(self):
        for function, needed in REQUIRED_ACTIONS.items():
            with self.subTest(function=function):
                actions = self.policy_actions(function)
                self.assertEqual(needed - actions, set(), f"{function} policy lacks actions")

    def test_s3_object_actions_scoped_to_recordings(self):
        self.assertIn("/recordings/*", unwrap(self.locals["recordings_objects_arn"]))
        for name, doc in self.data["aws_iam_policy_document"].items():
            for st in block_list(doc.get("statement", [])):
                if unwrap(st.get("effect", "Allow")) != "Allow":
                    continue
                acts = set(strings(st.get("actions", [])))
                if acts & {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}:
                    res = [norm(r) for r in strings(st.get("resources", []))]
                    self.assertEqual(res, ["local.recordings_objects_arn"], f"{name}: {res}")

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

    def test_bucket_public_access_block(self):
        blocks = [
            b
            for b in self.res["aws_s3_bucket_public_access_block"].values()
            if norm(self.attr(b, "bucket")).startswith("aws_s3_bucket.recordings.")
        ]
        self.assertEqual(len(blocks), 1)
        for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
            self.assertIs(self.attr(blocks[0], flag), True, flag)

    def test_bucket_lifecycle(self):
        lc = self.res["aws_s3_bucket_lifecycle_configuration"]["recordings"]
        self.assertTrue(norm(self.attr(lc, "bucket")).startswith("aws_s3_bucket.recordings."))
        rules = block_list(lc["rule"])
        self.assertTrue(any("abort_incomplete_multipart_upload" in r for r in rules))
        expiring = [r for r in rules if "expiration" in r and unwrap(r.get("status")) == "Enabled"]
        text = [" ".join(strings(r)) for r in expiring]
        self.assertTrue(any("recordings/" in t and "var.recording_retention_days" in norm(t) for t in text))
        self.assertTrue(any("var.chunk_retention_days" in norm(t) for t in text))

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
                     "merge_memory_mb", "merge_ephemeral_storage_mb", "recording_retention_days"):
            self.assertIn("validation", self.vars[name], f"{name} needs a validation block")
        self.assertIs(unwrap(self.vars["redis_url"]["sensitive"]), True)

    def test_outputs(self):
        outputs = set()
        for doc in self.docs.values():
            for entry in doc.get("output", []):
                outputs |= {unquote(k) for k in entry}
        self.assertEqual(
            {"http_api_url", "websocket_url", "bucket_name", "merge_queue_url", "dlq_url"} - outputs, set()
        )


if __name__ == "__main__":
    unittest.main()
