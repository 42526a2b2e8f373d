"""The ASGI side of zcopy serve: scope (pure), response cycle (pure), HTTP glue, app loading, lifespan."""
