# The sweep: what no request comes to do (stuck merges queued again, abandoned recordings
# merged or deleted, retention, multipart uploads and chunks left behind). A server runs it
# every SWEEP_INTERVAL_SECS; here nothing runs between requests, so EventBridge invokes the
# merge function on var.sweep_schedule with its scheduled event, which the function tells
# from a merge job by its detail-type. A pass takes a lease in Redis, so a late or repeated
# invocation overlapping another does nothing, and the next one picks up what one missed.
resource "aws_cloudwatch_event_rule" "sweep" {
  name                = "${var.name_prefix}-sweep"
  description         = "screenrec sweep (merge function)"
  schedule_expression = var.sweep_schedule
}

resource "aws_cloudwatch_event_target" "sweep" {
  rule      = aws_cloudwatch_event_rule.sweep.name
  target_id = "merge"
  arn       = aws_lambda_function.fn["merge"].arn
}

resource "aws_lambda_permission" "sweep" {
  statement_id  = "AllowSweepSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn["merge"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.sweep.arn
}
