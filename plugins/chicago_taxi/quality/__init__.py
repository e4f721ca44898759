"""Quality: the Great Expectations gates on raw and transformed trips (suites generated from the
schema, versioned under expectations/), their DAG steps, and the row-level expectations API
(`quality.rows`) that the stream applies to each micro-batch."""
