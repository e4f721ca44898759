"""The prediction service's online store reads: `RedisFeatureReader` reads Feast's Redis layout
directly, in one pipelined round trip. It lives in `features.redis_layout` with the writer and the
codec they share; this module keeps the reader's import path."""

from chicago_taxi.features.redis_layout import RedisFeatureReader

__all__ = ["RedisFeatureReader"]
