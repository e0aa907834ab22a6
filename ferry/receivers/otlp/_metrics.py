MetricRows = object
