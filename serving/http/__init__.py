"""The HTTP/JSON face of cdserve and its browser playground, served by Serve's HTTP proxy.

The routes mirror the gRPC contracts one to one and reach the same places: generation goes to the
Generator deployment through a Serve handle, concepts to the registry and trainings to the training
service as a gRPC client carrying the caller's own bearer token.
"""
