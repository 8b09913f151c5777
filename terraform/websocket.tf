# WebSocket API: $connect (token check), $disconnect and $default (subscribe) → the ws function.
locals {
  ws_routes = ["$connect", "$disconnect", "$default"]
}

resource "aws_apigatewayv2_api" "ws" {
  name          = "${var.name_prefix}-ws"
  protocol_type = "WEBSOCKET"
  description   = "screenrec recording progress notifications"
  # Messages carry "type" (subscribe, unsubscribe, status); every one goes to $default, where
  # the ws function dispatches on it.
  route_selection_expression = "$request.body.type"
}

resource "aws_apigatewayv2_integration" "ws" {
  api_id             = aws_apigatewayv2_api.ws.id
  integration_type   = "AWS_PROXY"
  integration_method = "POST"
  integration_uri    = aws_lambda_function.fn["ws"].invoke_arn
}

resource "aws_apigatewayv2_route" "ws" {
  #checkov:skip=CKV_AWS_309:The ws function checks the recording token itself on $connect and rejects the connection; $disconnect and $default only run on an accepted connection.
  for_each = toset(local.ws_routes)

  api_id    = aws_apigatewayv2_api.ws.id
  route_key = each.value
  target    = "integrations/${aws_apigatewayv2_integration.ws.id}"
}

resource "aws_cloudwatch_log_group" "ws_access" {
  name              = "/aws/apigateway/${var.name_prefix}-ws"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_apigatewayv2_stage" "ws" {
  #checkov:skip=CKV2_AWS_51:A stage client certificate is what API Gateway presents to HTTP backends; this stage's only integration is a Lambda proxy, and browsers cannot present client certificates.
  api_id      = aws_apigatewayv2_api.ws.id
  name        = var.ws_stage_name
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit  = var.api_throttle_rate_limit
    throttling_burst_limit = var.api_throttle_burst_limit
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.ws_access.arn
    format = jsonencode({
      requestId    = "$context.requestId"
      ip           = "$context.identity.sourceIp"
      requestTime  = "$context.requestTime"
      routeKey     = "$context.routeKey"
      eventType    = "$context.eventType"
      connectionId = "$context.connectionId"
      status       = "$context.status"
      error        = "$context.integrationErrorMessage"
    })
  }

  # The routes must exist before the first deployment.
  depends_on = [aws_apigatewayv2_route.ws]
}

resource "aws_lambda_permission" "ws_api" {
  statement_id  = "AllowWebSocketApiInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn["ws"].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.ws.execution_arn}/*/*"
}
