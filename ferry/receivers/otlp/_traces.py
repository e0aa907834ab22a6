SpanRows = object
