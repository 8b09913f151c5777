# HTTP API (payload format 2.0) → the api function. Every route the router serves on AWS
# (GET /files/{key+} only serves the filesystem store).
locals {
  http_routes = [
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
  ]
}

resource "aws_apigatewayv2_api" "http" {
  name          = "${var.name_prefix}-http"
  protocol_type = "HTTP"
  description   = "screenrec HTTP API"

  cors_configuration {
    allow_origins  = var.cors_allowed_origins
    allow_methods  = ["GET", "POST", "PUT", "OPTIONS"]
    allow_headers  = ["authorization", "content-type"]
    expose_headers = ["content-range", "etag", "location"]
    max_age        = 3600
  }
}

resource "aws_apigatewayv2_integration" "api" {
  api_id                 = aws_apigatewayv2_api.http.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.fn["api"].invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 30000
}

resource "aws_apigatewayv2_route" "http" {
  #checkov:skip=CKV_AWS_309:Authorization is the application's own: recording ids are unguessable capabilities and uploads/downloads use presigned S3 URLs; the demo page, its assets, health and OpenAPI routes are public by design.
  for_each = toset(local.http_routes)

  api_id    = aws_apigatewayv2_api.http.id
  route_key = each.value
  target    = "integrations/${aws_apigatewayv2_integration.api.id}"
}

resource "aws_cloudwatch_log_group" "http_access" {
  name              = "/aws/apigateway/${var.name_prefix}-http"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_apigatewayv2_stage" "http" {
  api_id      = aws_apigatewayv2_api.http.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit  = var.api_throttle_rate_limit
    throttling_burst_limit = var.api_throttle_burst_limit
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.http_access.arn
    format = jsonencode({
      requestId        = "$context.requestId"
      ip               = "$context.identity.sourceIp"
      requestTime      = "$context.requestTime"
      httpMethod       = "$context.httpMethod"
      routeKey         = "$context.routeKey"
      path             = "$context.path"
      status           = "$context.status"
      protocol         = "$context.protocol"
      responseLength   = "$context.responseLength"
      latency          = "$context.responseLatency"
      integrationError = "$context.integrationErrorMessage"
    })
  }
}

resource "aws_lambda_permission" "http_api" {
  statement_id  = "AllowHttpApiInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn["api"].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.http.execution_arn}/*/*"
}
