output "http_api_url" {
  description = "Base URL of the HTTP API."
  value       = aws_apigatewayv2_stage.http.invoke_url
}

output "websocket_url" {
  description = "wss:// URL of the WebSocket API stage."
  value       = aws_apigatewayv2_stage.ws.invoke_url
}

output "apigw_management_endpoint" {
  description = "Endpoint the functions post WebSocket frames to (APIGW_MANAGEMENT_ENDPOINT)."
  value       = local.apigw_management_endpoint
}

output "bucket_name" {
  description = "Recordings bucket."
  value       = aws_s3_bucket.recordings.bucket
}

output "merge_queue_url" {
  description = "URL of the merge job queue (MERGE_QUEUE_URL)."
  value       = aws_sqs_queue.merge.url
}

output "dlq_url" {
  description = "URL of the merge dead-letter queue."
  value       = aws_sqs_queue.merge_dlq.id
}

output "function_names" {
  description = "Names of the api, ws and merge Lambda functions."
  value       = local.function_names
}

output "webhook_queue_url" {
  description = "URL of the webhook delivery queue (WEBHOOK_QUEUE_URL); null when no webhook endpoint is configured."
  value       = one(aws_sqs_queue.webhooks[*].url)
}

output "webhook_dlq_url" {
  description = "URL of the webhook dead-letter queue (messages the merge function could not handle); null without webhooks."
  value       = one(aws_sqs_queue.webhooks_dlq[*].id)
}
