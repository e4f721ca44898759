"""Serving: the fare service (champion + online features + transform graph; `fare_service`), its
request and response models (`contract`), and the Bento build step (`bento`). The HTTP layer
itself (BentoML service, middleware) lives in bentos/."""
