-- The trace an outbox item belongs to (W3C Trace Context: the `traceparent` value, then a space
-- and the `tracestate` value when there is one), so that the instance which sends the item
-- continues the OpenTelemetry trace of the one which stored it. NULL while telemetry is off.
ALTER TABLE outbox ADD COLUMN trace_context TEXT;
